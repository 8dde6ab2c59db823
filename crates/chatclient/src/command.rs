//! Parsing one typed line into a [`Command`].
//!
//! Two syntaxes are accepted so that users of the old C++ client feel at home:
//! words separated by spaces (`chat 5 hello there`) and the original's colons
//! (`chat:5:hello there`). In both, the last argument takes the rest of the line, so a message
//! may contain spaces (and, in the colon form, colons).

use clusterchat_proto::{GroupId, UserId};

/// A conversation: with one user (named by the other party) or in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// The one-to-one conversation with this user.
    User(UserId),
    /// The conversation of this group.
    Group(GroupId),
}

impl std::fmt::Display for Conv {
    /// `user 5` or `group 3`, as the client's lines name them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conv::User(id) => write!(f, "user {id}"),
            Conv::Group(id) => write!(f, "group {id}"),
        }
    }
}

/// One thing the user asked for. Parsing is pure so it can be tested without a terminal or a
/// server; [`crate::state::ClientState::request`] turns a command into a wire request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create an account; the server answers with its id.
    Register {
        /// Display name.
        name: String,
        /// Password (the rest of the line, so it may contain spaces).
        password: String,
    },
    /// Log in as an existing account.
    Login {
        /// Account id.
        id: UserId,
        /// Password (the rest of the line, but a last word `--takeover`).
        password: String,
        /// End the account's session elsewhere rather than be refused (`--takeover`).
        takeover: bool,
    },
    /// Send a one-to-one message.
    Chat {
        /// Receiver.
        to: UserId,
        /// The message (the rest of the line).
        text: String,
    },
    /// Add a friend.
    AddFriend {
        /// The user to add.
        id: UserId,
    },
    /// Create a group (the creator joins it).
    CreateGroup {
        /// Group name (one word).
        name: String,
        /// Description (the rest of the line, may be empty).
        desc: String,
    },
    /// Join a group.
    AddGroup {
        /// The group to join.
        id: GroupId,
    },
    /// Send a message to a group.
    GroupChat {
        /// The group.
        group: GroupId,
        /// The message (the rest of the line).
        text: String,
    },
    /// Show the latest stored messages of a conversation.
    History {
        /// The conversation (`5` for user 5, `g3` for group 3).
        conv: Conv,
        /// How many messages (the server's default when absent).
        count: Option<u32>,
    },
    /// Show the friends of the last login reply.
    Friends,
    /// Show the groups of the last login reply.
    Groups,
    /// Log out; the connection stays open for another login.
    Logout,
    /// Show the command list.
    Help,
    /// Leave the client.
    Quit,
}

/// Why a line is not a command; the message is meant to be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first word is not a command.
    #[error("unknown command `{0}` (type `help` for the list)")]
    Unknown(String),
    /// A known command with missing or malformed arguments; holds its usage line.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// The command list shown by `help`: one line per command, usage then purpose.
pub const HELP: &str = "\
commands (`chat:5:hi` colon syntax works too):
  register <name> <password>      create an account
  login <id> <password>           log in
  login <id> <password> --takeover  log in, ending the account's session elsewhere
  chat <id> <text...>             send a message to a user
  addfriend <id>                  add a friend
  creategroup <name> <desc...>    create a group
  addgroup <id>                   join a group
  groupchat <id> <text...>        send a message to a group
  history <id>|g<id> [count]      latest messages with a user, or of group <id>
  friends                         friends from the last login
  groups                          groups from the last login
  logout                          log out (alias: loginout)
  help                            this list
  quit                            leave (also Ctrl+D)";

/// The last word of a login that ends the account's other session.
const TAKEOVER: &str = "--takeover";

/// Parses a typed line. Returns `Ok(None)` for a blank line, which is not an error.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let split = line
        .find(|c: char| c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    let word = line[..split].to_ascii_lowercase();
    let colon = line[split..].starts_with(':');
    let rest = after_first(&line[split..]);
    let args = |n: usize| split_args(rest, n, colon);
    let cmd = match word.as_str() {
        "register" => {
            let usage = "register <name> <password>";
            let [name, password] = two(args(2), usage)?;
            Command::Register { name, password }
        }
        "login" => {
            let usage = "login <id> <password> [--takeover]";
            let [id, password] = two(args(2), usage)?;
            let (password, takeover) = match password.strip_suffix(TAKEOVER) {
                Some(p) if p.ends_with(char::is_whitespace) && !p.trim().is_empty() => {
                    (p.trim_end().to_string(), true)
                }
                _ => (password, false),
            };
            Command::Login {
                id: number(&id, usage)?,
                password,
                takeover,
            }
        }
        "chat" => {
            let usage = "chat <id> <text...>";
            let [to, text] = two(args(2), usage)?;
            Command::Chat {
                to: number(&to, usage)?,
                text,
            }
        }
        "groupchat" => {
            let usage = "groupchat <id> <text...>";
            let [group, text] = two(args(2), usage)?;
            Command::GroupChat {
                group: number(&group, usage)?,
                text,
            }
        }
        "creategroup" => {
            let usage = "creategroup <name> <desc...>";
            let mut parts = args(2).into_iter();
            let name = parts.next().ok_or(ParseError::Usage(usage))?;
            let desc = parts.next().unwrap_or_default();
            Command::CreateGroup { name, desc }
        }
        "addfriend" => Command::AddFriend {
            id: one_number(args(1), "addfriend <id>")?,
        },
        "addgroup" => Command::AddGroup {
            id: one_number(args(1), "addgroup <id>")?,
        },
        "history" => {
            let usage = "history <id>|g<id> [count]";
            let parts = args(2);
            let (conv, count) = match parts.as_slice() {
                [conv] => (conversation(conv, usage)?, None),
                [conv, count] => (
                    conversation(conv, usage)?,
                    Some(
                        u32::try_from(number(count, usage)?)
                            .map_err(|_| ParseError::Usage(usage))?,
                    ),
                ),
                _ => return Err(ParseError::Usage(usage)),
            };
            Command::History { conv, count }
        }
        "friends" => no_args(rest, Command::Friends, "friends")?,
        "groups" => no_args(rest, Command::Groups, "groups")?,
        "logout" | "loginout" => no_args(rest, Command::Logout, "logout")?,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        _ => return Err(ParseError::Unknown(line[..split].to_string())),
    };
    Ok(Some(cmd))
}

/// Splits `rest` into at most `n` non-empty arguments, the last one taking the remainder of
/// the line (trimmed). With `colon` the separator is `:`, otherwise runs of whitespace.
fn split_args(rest: &str, n: usize, colon: bool) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = rest.trim_start();
    while !rest.is_empty() && out.len() + 1 < n {
        let end = if colon {
            rest.find(':')
        } else {
            rest.find(char::is_whitespace)
        };
        let Some(end) = end else { break };
        let word = rest[..end].trim();
        if !word.is_empty() {
            out.push(word.to_string());
        }
        rest = after_first(&rest[end..]).trim_start();
    }
    let last = rest.trim();
    if !last.is_empty() {
        out.push(last.to_string());
    }
    out
}

/// `s` without its first character (a separator, which may be more than one byte).
fn after_first(s: &str) -> &str {
    let mut chars = s.chars();
    chars.next();
    chars.as_str()
}

fn two(args: Vec<String>, usage: &'static str) -> Result<[String; 2], ParseError> {
    <[String; 2]>::try_from(args).map_err(|_| ParseError::Usage(usage))
}

fn one_number(args: Vec<String>, usage: &'static str) -> Result<i64, ParseError> {
    match args.as_slice() {
        [id] => number(id, usage),
        _ => Err(ParseError::Usage(usage)),
    }
}

fn number(s: &str, usage: &'static str) -> Result<i64, ParseError> {
    s.parse::<i64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(ParseError::Usage(usage))
}

/// `5` is user 5, `g3` (or `G3`) group 3.
fn conversation(s: &str, usage: &'static str) -> Result<Conv, ParseError> {
    match s.strip_prefix(['g', 'G']) {
        Some(group) => Ok(Conv::Group(number(group, usage)?)),
        None => Ok(Conv::User(number(s, usage)?)),
    }
}

fn no_args(rest: &str, cmd: Command, usage: &'static str) -> Result<Command, ParseError> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Usage(usage))
    }
}

#[cfg(test)]
mod tests {
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
                password: "pw".into(),
                takeover: false
            }
        );
        assert_eq!(
            ok("login 12 my pw  --takeover"),
            Command::Login {
                id: 12,
                password: "my pw".into(),
                takeover: true
            }
        );
        assert_eq!(
            ok("login 12 --takeover"),
            Command::Login {
                id: 12,
                password: "--takeover".into(),
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
                password: "pw".into(),
                takeover: false
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
}
