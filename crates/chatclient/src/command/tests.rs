//! Tests of [`super`].

use super::*;

fn ok(line: &str) -> Command {
    parse(line).unwrap().unwrap()
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
            password: "s3cret pw".into()
        }
    );
    assert_eq!(
        ok("login 12 pw"),
        Command::Login {
            id: 12,
            password: "pw".into()
        }
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
    let usage = |l: &str| parse(l) == Err(ParseError::Usage("history <id>|g<id> [count]"));
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
            password: "pw".into()
        }
    );
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
    let usage = |l: &str| matches!(parse(l), Err(ParseError::Usage(_)));
    assert!(usage("chat 5"));
    assert!(usage("chat x hello"));
    assert!(usage("chat:5:"));
    assert!(usage("chat -1 hi"));
    assert!(usage("addfriend"));
    assert!(usage("addfriend 5 6"));
    assert!(usage("addgroup:abc"));
    assert!(usage("login 5"));
    assert!(usage("register bob"));
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
