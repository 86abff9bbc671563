//! rbuild builder
