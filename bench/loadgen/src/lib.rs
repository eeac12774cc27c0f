//! What the load generators share: the measured window (timing, the server's and this
//! process's CPU, the rest of the machine's; [`measure`]) and the JSON helpers.

pub mod measure;
