//! bucket (to be written).
