//! Per-namespace TCP sysctls and counters.
