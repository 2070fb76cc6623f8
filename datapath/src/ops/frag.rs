//! frag (to be written).
