//! DNS on the wire: reading queries, writing local answers, aging cached responses.

pub mod answer;
pub mod name;
pub mod query;
pub mod records;
