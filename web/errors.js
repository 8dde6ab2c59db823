// What each errno of docs/PROTOCOL.md means to a user. The server's own `errmsg` is shown
// after it, since it names the field or the wait ("retry in 4 s").

const TEXT = {
  1: 'Wrong name, id or password',
  2: 'This account is online in another window or device',
  100: 'The server could not read the request (malformed JSON)',
  101: 'The server does not know this request',
  102: 'A field is missing or invalid',
  103: 'The request is too large',
  104: 'You are not logged in',
  105: 'Not allowed',
  106: 'No such user or group',
  107: 'Already logged in on this connection',
  108: 'The server cannot reach its database or message bus; try again in a moment',
  109: 'Too many attempts; wait a moment',
};

// Where a request gives an errno another meaning (by the request's msgid).
const FOR_REQUEST = {
  4: { 1: 'Registration refused' }, // REG: bad or taken name, empty password
  8: { 105: 'That group name is taken' }, // CREATE_GROUP
  7: { 105: 'You cannot add yourself' }, // ADD_FRIEND
};

/** A failed request: `errno` from the server (0 for local failures such as a lost connection). */
export class ChatError extends Error {
  constructor(errno, errmsg, request) {
    super(describe(errno, errmsg, request));
    this.errno = errno;
    this.errmsg = errmsg || '';
    this.request = request;
  }
}

/**
 * One sentence for a user: the errno's meaning (for `request`, a msgid, when it has its
 * own), then the server's detail if it adds one.
 */
export function describe(errno, errmsg, request) {
  const base = FOR_REQUEST[request]?.[errno] || TEXT[errno];
  const detail = (errmsg || '').trim();
  if (!base) return detail || `Error ${errno}`;
  if (!detail) return `${base}.`;
  return `${base}: ${detail}`;
}
