//! Wire views (to be written).
