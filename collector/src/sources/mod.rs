//! The sources: each module reads one kind of input.
