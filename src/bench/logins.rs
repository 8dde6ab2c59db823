//! logins
