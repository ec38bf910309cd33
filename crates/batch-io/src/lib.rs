//! Item readers and writers for csv2db.

pub mod csv;
pub mod postgres;
pub mod rejects;
pub mod sqlite;
pub mod table;
