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
        /// Password (the rest of the line, so it may contain spaces); `None`: asked for
        /// without echo.
        password: Option<String>,
    },
    /// Log in as an existing account.
    Login {
        /// Account id.
        id: UserId,
        /// Password (the rest of the line, but a last word `--takeover`); `None`: asked for
        /// without echo.
        password: Option<String>,
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
    /// Show a page of a group's members (MEMBERS), with their state and role.
    Members {
        /// The group.
        group: GroupId,
        /// Only members with a higher id (the next page); from the first when absent.
        after: Option<UserId>,
    },
    /// Show the friends: the login reply's, with the ones added since.
    Friends,
    /// Show the groups: the login reply's, with the ones created or joined since.
    Groups,
    /// Log out; the connection stays open for another login.
    Logout,
    /// Show the command list.
    Help,
    /// Leave the client.
    Quit,
}

impl Command {
    /// Whether the line that gave this command may be kept in the line history (and its
    /// file): not when it holds a password.
    pub fn may_keep_in_history(&self) -> bool {
        match self {
            Command::Login { password, .. } | Command::Register { password, .. } => {
                password.is_none()
            }
            _ => true,
        }
    }
}

/// Why a line is not a command; the message is meant to be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The first word is not a command.
    #[error("unknown command `{0}` (type `help` for the list)")]
    Unknown(String),
    /// A known command with missing or extra arguments; holds its usage line.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// An id (or count) that is not a number from 1 up: says which, what is wrong, and the
    /// usage line.
    #[error("{what} {given:?} {why} (usage: {usage})")]
    BadNumber {
        /// What the argument is (`user id`, `group id`, `count`).
        what: &'static str,
        /// The argument as typed.
        given: String,
        /// What is wrong with it.
        why: &'static str,
        /// The command's usage line.
        usage: &'static str,
    },
}

/// What a number argument names, for [`ParseError::BadNumber`].
const USER_ID: &str = "user id";
const GROUP_ID: &str = "group id";
const COUNT: &str = "count";

/// The command list shown by `help`: one line per command, usage then purpose.
pub const HELP: &str = "\
commands (`chat:5:hi` colon syntax works too):
  register <name> [password]      create an account (no password: asked without echo)
  login <id> [password]           log in (no password: asked without echo)
  login <id> <password> --takeover  log in, ending the account's session elsewhere
  chat <id> <text...>             send a message to a user
  addfriend <id>                  add a friend
  creategroup <name> <desc...>    create a group
  addgroup <id>                   join a group
  groupchat <id> <text...>        send a message to a group
  history <id>|g<id> [count]      latest messages with a user, or of group <id>
  members <id> [after]            members of group <id> (the page after user id [after])
  friends                         your friends (state as of your login or their last message)
  groups                          your groups
  logout                          log out (alias: loginout)
  help                            this list
  quit                            leave (also Ctrl+D)
Lines holding a password are never kept in the line history.";

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
            let usage = "register <name> [password]";
            let mut parts = args(2).into_iter();
            let name = parts.next().ok_or(ParseError::Usage(usage))?;
            Command::Register {
                name,
                password: parts.next(),
            }
        }
        "login" => {
            let usage = "login <id> [password [--takeover]]";
            let mut parts = args(2).into_iter();
            let id = parts.next().ok_or(ParseError::Usage(usage))?;
            let id = number(&id, USER_ID, usage)?;
            // A password alone is a password, even `--takeover`.
            let (password, takeover) = match parts.next() {
                Some(password) => match password.strip_suffix(TAKEOVER) {
                    Some(p) if p.ends_with(char::is_whitespace) && !p.trim().is_empty() => {
                        (Some(p.trim_end().to_string()), true)
                    }
                    _ => (Some(password), false),
                },
                None => (None, false),
            };
            Command::Login {
                id,
                password,
                takeover,
            }
        }
        "chat" => {
            let usage = "chat <id> <text...>";
            let parts = args(2);
            let to = number(first(&parts, usage)?, USER_ID, usage)?;
            let [_, text] = two(parts, usage)?;
            Command::Chat { to, text }
        }
        "groupchat" => {
            let usage = "groupchat <id> <text...>";
            let parts = args(2);
            let group = number(first(&parts, usage)?, GROUP_ID, usage)?;
            let [_, text] = two(parts, usage)?;
            Command::GroupChat { group, text }
        }
        "creategroup" => {
            let usage = "creategroup <name> <desc...>";
            let mut parts = args(2).into_iter();
            let name = parts.next().ok_or(ParseError::Usage(usage))?;
            let desc = parts.next().unwrap_or_default();
            Command::CreateGroup { name, desc }
        }
        "addfriend" => Command::AddFriend {
            id: one_number(args(1), USER_ID, "addfriend <id>")?,
        },
        "addgroup" => Command::AddGroup {
            id: one_number(args(1), GROUP_ID, "addgroup <id>")?,
        },
        "history" => {
            let usage = "history <id>|g<id> [count]";
            let parts = args(2);
            let (conv, count) = match parts.as_slice() {
                [conv] => (conversation(conv, usage)?, None),
                [conv, count] => (conversation(conv, usage)?, Some(small(count, usage)?)),
                _ => return Err(ParseError::Usage(usage)),
            };
            Command::History { conv, count }
        }
        "members" => {
            let usage = "members <id> [after]";
            let parts = args(2);
            let (group, after) = match parts.as_slice() {
                [group] => (number(group, GROUP_ID, usage)?, None),
                [group, after] => (
                    number(group, GROUP_ID, usage)?,
                    Some(number(after, USER_ID, usage)?),
                ),
                _ => return Err(ParseError::Usage(usage)),
            };
            Command::Members { group, after }
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

/// The first argument, which a command needs before the id in it is checked.
fn first<'a>(args: &'a [String], usage: &'static str) -> Result<&'a str, ParseError> {
    args.first()
        .map(String::as_str)
        .ok_or(ParseError::Usage(usage))
}

fn one_number(
    args: Vec<String>,
    what: &'static str,
    usage: &'static str,
) -> Result<i64, ParseError> {
    match args.as_slice() {
        [id] => number(id, what, usage),
        _ => Err(ParseError::Usage(usage)),
    }
}

/// An id (or count): a whole number from 1 up; otherwise an error that says what is wrong.
fn number(s: &str, what: &'static str, usage: &'static str) -> Result<i64, ParseError> {
    let bad = |why| ParseError::BadNumber {
        what,
        given: s.chars().take(40).collect(),
        why,
        usage,
    };
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("is not a number"));
    }
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(bad("is not valid: numbers start at 1")),
        Err(_) if s.starts_with('-') => Err(bad("is not valid: numbers start at 1")),
        Err(_) => Err(bad("is too large")),
    }
}

/// A count (at most 2^32 - 1).
fn small(s: &str, usage: &'static str) -> Result<u32, ParseError> {
    u32::try_from(number(s, COUNT, usage)?).map_err(|_| ParseError::BadNumber {
        what: COUNT,
        given: s.to_string(),
        why: "is too large",
        usage,
    })
}

/// `5` is user 5, `g3` (or `G3`) group 3.
fn conversation(s: &str, usage: &'static str) -> Result<Conv, ParseError> {
    match s.strip_prefix(['g', 'G']) {
        Some(group) => Ok(Conv::Group(number(group, GROUP_ID, usage)?)),
        None => Ok(Conv::User(number(s, USER_ID, usage)?)),
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
mod tests;
