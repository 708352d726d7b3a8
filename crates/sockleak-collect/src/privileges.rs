//! What this run may see, and what would fix each gap.
