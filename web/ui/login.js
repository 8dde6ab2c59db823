// The login / register form. "alice" logs in by name, "#1" or "1" by id.

import { byId } from './dom.js';

/** Parses the name-or-id field: {id} for "#12" / "12", else {name}. */
export function parseIdentity(text) {
  const t = text.trim();
  const m = /^#?(\d{1,15})$/.exec(t);
  return m ? { id: Number(m[1]) } : { name: t };
}

/**
 * Wires the form. handlers: onLogin({id|name, password, takeover}), onRegister(name, password);
 * both return promises and throw errors whose message is shown.
 */
export function initLogin(handlers) {
  const form = byId('login-form');
  const user = byId('login-user');
  const password = byId('login-password');
  const takeover = byId('takeover-btn');
  const buttons = [byId('login-btn'), byId('register-btn'), takeover];
  user.value = localStorage.getItem('clusterchat.lastUser') || '';

  async function run(action) {
    setError('');
    buttons.forEach((b) => (b.disabled = true));
    try {
      await action();
      localStorage.setItem('clusterchat.lastUser', user.value.trim());
      password.value = '';
      takeover.hidden = true;
    } catch (err) {
      setError(err.message);
      takeover.hidden = err.errno !== 2;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run(() => handlers.onLogin({ ...parseIdentity(user.value), password: password.value }));
  });
  takeover.addEventListener('click', () =>
    run(() =>
      handlers.onLogin({ ...parseIdentity(user.value), password: password.value, takeover: true }),
    ),
  );
  byId('register-btn').addEventListener('click', () => {
    if (!form.reportValidity()) return;
    run(() => handlers.onRegister(user.value.trim(), password.value));
  });
}

export function setError(text) {
  byId('login-error').textContent = text;
}

export function showLoginView(message = '') {
  byId('chat-view').hidden = true;
  byId('login-view').hidden = false;
  setError(message);
  byId('login-password').focus();
}
