//! The service layer: each lifecycle written once, over the store and the
//! infrastructure. HTTP routes, the job worker and the operator commands all call
//! these functions; none of them knows about HTTP.

pub mod accounts;
pub mod cleaners;
pub mod files;
pub mod ops;
pub mod shares;
