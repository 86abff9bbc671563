//! rbuild store
