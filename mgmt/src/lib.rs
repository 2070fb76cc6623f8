//! mtugate management thread (issue 4).
