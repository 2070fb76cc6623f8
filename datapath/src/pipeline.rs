//! The pipeline (to be written).
