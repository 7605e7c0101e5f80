//! Output formats. Every reporter prints secrets only in the form held in
//! `Finding::secret`, which is redacted unless the user asked otherwise.

pub mod human;
pub mod json;
pub mod sarif;
