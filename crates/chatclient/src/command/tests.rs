//! Tests of [`super`].

use super::*;

fn ok(line: &str) -> Command {
    parse(line).unwrap().unwrap()
}

impl ParseError {
    /// The usage line of the command, when the command is known.
    fn usage(&self) -> Option<&'static str> {
        match self {
            ParseError::Unknown(_) => None,
            ParseError::Usage(usage) | ParseError::BadNumber { usage, .. } => Some(usage),
        }
    }
}

#[test]
fn space_syntax_keeps_the_rest_of_the_line() {
    assert_eq!(
        ok("chat 5   hello,  world: hi "),
        Command::Chat {
            to: 5,
            text: "hello,  world: hi".into()
        }
    );
    assert_eq!(
        ok("  GroupChat 3 hi all"),
        Command::GroupChat {
            group: 3,
            text: "hi all".into()
        }
    );
    assert_eq!(
        ok("register alice s3cret pw"),
        Command::Register {
            name: "alice".into(),
            password: Some("s3cret pw".into())
        }
    );
    assert_eq!(
        ok("login 12 pw"),
        Command::Login {
            id: 12,
            password: Some("pw".into()),
            takeover: false
        }
    );
    assert_eq!(
        ok("login 12 my pw  --takeover"),
        Command::Login {
            id: 12,
            password: Some("my pw".into()),
            takeover: true
        }
    );
    assert_eq!(
        ok("login 12 --takeover"),
        Command::Login {
            id: 12,
            password: Some("--takeover".into()),
            takeover: false
        },
        "a password alone is a password"
    );
    assert_eq!(
        ok("creategroup rust all about rust"),
        Command::CreateGroup {
            name: "rust".into(),
            desc: "all about rust".into()
        }
    );
    assert_eq!(
        ok("creategroup rust"),
        Command::CreateGroup {
            name: "rust".into(),
            desc: String::new()
        }
    );
    assert_eq!(ok("addfriend 7"), Command::AddFriend { id: 7 });
    assert_eq!(ok("addgroup 2"), Command::AddGroup { id: 2 });
}

#[test]
fn history_of_a_user_or_a_group_with_an_optional_count() {
    let history = |conv, count| Command::History { conv, count };
    assert_eq!(ok("history 5"), history(Conv::User(5), None));
    assert_eq!(ok("history g3"), history(Conv::Group(3), None));
    assert_eq!(ok("History G3  20 "), history(Conv::Group(3), Some(20)));
    assert_eq!(ok("history 7 1"), history(Conv::User(7), Some(1)));
    assert_eq!(ok("history:g4:10"), history(Conv::Group(4), Some(10)));
    assert_eq!(ok("history:12"), history(Conv::User(12), None));
    let usage =
        |l: &str| parse(l).err().and_then(|e| e.usage()) == Some("history <id>|g<id> [count]");
    for bad in [
        "history",
        "history x",
        "history g",
        "history gg3",
        "history g-3",
        "history 0",
        "history 5 0",
        "history 5 -2",
        "history 5 many",
        "history 5 10 more",
        "history 5 99999999999",
    ] {
        assert!(usage(bad), "{bad}");
    }
    let said = |l: &str| parse(l).unwrap_err().to_string();
    assert!(said("history g-3").starts_with(r#"group id "-3" is not valid"#));
    assert!(said("history x").starts_with(r#"user id "x" is not a number"#));
    assert!(said("history 5 99999999999").starts_with(r#"count "99999999999" is too large"#));
    assert_eq!(Conv::User(5).to_string(), "user 5");
    assert_eq!(Conv::Group(3).to_string(), "group 3");
}

#[test]
fn colon_syntax_of_the_old_client() {
    assert_eq!(
        ok("chat:5:hello: there"),
        Command::Chat {
            to: 5,
            text: "hello: there".into()
        }
    );
    assert_eq!(ok("addfriend:5"), Command::AddFriend { id: 5 });
    assert_eq!(
        ok("creategroup:name:a desc"),
        Command::CreateGroup {
            name: "name".into(),
            desc: "a desc".into()
        }
    );
    assert_eq!(ok("addgroup:3"), Command::AddGroup { id: 3 });
    assert_eq!(
        ok("groupchat:3:hi"),
        Command::GroupChat {
            group: 3,
            text: "hi".into()
        }
    );
    assert_eq!(ok("loginout"), Command::Logout);
    assert_eq!(
        ok("login:4:pw"),
        Command::Login {
            id: 4,
            password: Some("pw".into()),
            takeover: false
        }
    );
}

#[test]
fn passwords_may_be_left_out_and_such_lines_may_be_kept_in_history() {
    let login = ok("login 12");
    assert_eq!(
        login,
        Command::Login {
            id: 12,
            password: None,
            takeover: false
        }
    );
    assert!(login.may_keep_in_history());
    assert!(!ok("login 12 pw").may_keep_in_history());
    assert!(!ok("login:12:pw").may_keep_in_history());
    assert!(!ok("login 12 pw --takeover").may_keep_in_history());
    let register = ok("register bob");
    assert_eq!(
        register,
        Command::Register {
            name: "bob".into(),
            password: None
        }
    );
    assert!(register.may_keep_in_history());
    assert!(!ok("register bob pw").may_keep_in_history());
    assert!(ok("chat 5 my password is x").may_keep_in_history());
}

#[test]
fn members_of_a_group_and_the_next_page() {
    let members = |group, after| Command::Members { group, after };
    assert_eq!(ok("members 3"), members(3, None));
    assert_eq!(ok("members:3:7"), members(3, Some(7)));
    assert_eq!(
        parse("members").unwrap_err(),
        ParseError::Usage("members <id> [after]")
    );
    assert!(parse("members g3")
        .unwrap_err()
        .to_string()
        .starts_with(r#"group id "g3" is not a number"#));
}

#[test]
fn a_bad_id_says_what_is_wrong_with_it() {
    let said = |l: &str| parse(l).unwrap_err().to_string();
    assert_eq!(
        said("login abc pw"),
        r#"user id "abc" is not a number (usage: login <id> [password [--takeover]])"#
    );
    assert_eq!(
        said("chat -1 x"),
        r#"user id "-1" is not valid: numbers start at 1 (usage: chat <id> <text...>)"#
    );
    assert_eq!(
        said("chat 0 x"),
        r#"user id "0" is not valid: numbers start at 1 (usage: chat <id> <text...>)"#
    );
    assert_eq!(
        said("groupchat 99999999999999999999 x"),
        r#"group id "99999999999999999999" is too large (usage: groupchat <id> <text...>)"#
    );
    assert_eq!(
        said("chat -99999999999999999999 x"),
        r#"user id "-99999999999999999999" is not valid: numbers start at 1 (usage: chat <id> <text...>)"#
    );
    assert!(said("addgroup 1.5").starts_with(r#"group id "1.5" is not a number"#));
    assert!(said("addfriend bob").starts_with(r#"user id "bob" is not a number"#));
    // A control character in the id is shown escaped, not sent to the terminal.
    assert!(said("chat \x1b[2J hi").starts_with(r#"user id "\u{1b}[2J" is not"#));
    // The password is never repeated back.
    assert!(!said("login x s3cret").contains("s3cret"));
    // Missing arguments still get the usage line alone.
    assert_eq!(said("chat 5"), "usage: chat <id> <text...>");
}

#[test]
fn words_without_arguments() {
    assert_eq!(parse("   ").unwrap(), None);
    assert_eq!(ok("friends"), Command::Friends);
    assert_eq!(ok("groups"), Command::Groups);
    assert_eq!(ok("logout"), Command::Logout);
    assert_eq!(ok("help"), Command::Help);
    assert_eq!(ok("quit"), Command::Quit);
    assert_eq!(ok("exit"), Command::Quit);
}

#[test]
fn bad_lines_get_a_usage_or_unknown_error() {
    let usage = |l: &str| parse(l).is_err_and(|e| e.usage().is_some());
    assert!(usage("chat 5"));
    assert!(usage("chat x hello"));
    assert!(usage("chat:5:"));
    assert!(usage("chat -1 hi"));
    assert!(usage("addfriend"));
    assert!(usage("addfriend 5 6"));
    assert!(usage("addgroup:abc"));
    assert!(usage("login"));
    assert!(usage("register"));
    assert!(usage("creategroup"));
    assert!(usage("friends now"));
    assert_eq!(parse("shout hi"), Err(ParseError::Unknown("shout".into())));
    assert_eq!(
        parse("usage: chat <id> <text...>"),
        Err(ParseError::Unknown("usage".into()))
    );
    assert_eq!(
        ParseError::Usage("addgroup <id>").to_string(),
        "usage: addgroup <id>"
    );
}
