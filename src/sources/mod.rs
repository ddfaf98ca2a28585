//! Where lists come from besides local files: HTTP(S) downloads.
//!
//! A source writes each good copy to the list's `path`; the reloader picks it up from there
//! like any other change, so a download and an edit take the same road into the policy.

pub mod http;
