//! mss (to be written).
