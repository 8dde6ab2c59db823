//! Tests that show a known server bug: kept in the suite, run on both backends like
//! [`on_both_backends!`](crate::on_both_backends), but `#[ignore]`d with the bug as the reason
//! (`cargo test -- --ignored` runs them).

/// `server_bug!("what is wrong", test_fn)` makes `test_fn::sqlite` and `test_fn::mysql`,
/// both ignored with that reason.
#[macro_export]
macro_rules! server_bug {
    ($reason:literal, $name:ident $(,)?) => {
        mod $name {
            #[test]
            #[ignore = $reason]
            fn sqlite() {
                super::$name()
            }

            #[test]
            #[ignore = $reason]
            fn mysql() {
                let Some(_db) = $crate::util::server::use_mysql(stringify!($name)) else {
                    return;
                };
                super::$name()
            }
        }
    };
}
