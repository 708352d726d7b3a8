//! The /proc walk: processes, their descriptors and limits.
