//! Unit tests of the group coordinator state machine.
