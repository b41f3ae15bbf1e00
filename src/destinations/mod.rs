//! Where audiences are sent: each ad platform is one folder behind the Destination trait.

pub mod meta;
