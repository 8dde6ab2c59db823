// The cluster panel: which server this page talks to and the live servers with their online
// counts, from GET /api/cluster every 2 s.

import { el, replace, byId } from './dom.js';

const REFRESH_MS = 2000;

/**
 * Starts polling. `connectedNode()` returns the node id the WebSocket is on, when known.
 * Returns a function that stops the polling.
 */
export function startClusterPanel(connectedNode) {
  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const res = await fetch('api/cluster', { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      render(await res.json(), connectedNode());
    } catch (e) {
      byId('cluster-node').textContent = `cluster information unavailable (${e.message})`;
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function render(info, wsNode) {
  const servers = Array.isArray(info.servers) ? info.servers : [];
  // The server our WebSocket is on, when the server tells it (`node` in the LOGIN_ACK);
  // otherwise the one that answered this request, which behind nginx may be another.
  const mine = wsNode || info.node;
  byId('cluster-node').textContent = wsNode
    ? `this page is connected to ${wsNode}`
    : `answered by ${info.node ?? '?'}`;
  replace(
    byId('cluster-servers'),
    servers.length
      ? servers.map((s) =>
          el(
            'li',
            { class: s.node === mine ? 'self' : '', dataset: { node: s.node } },
            el('span', { class: 'dot online' }),
            el('span', { class: 'node', title: s.node }, s.node),
            s.node === mine ? el('span', { class: 'tag' }, wsNode ? 'this page' : 'answered') : null,
            el('span', { class: 'count' }, `${s.online} online`),
          ),
        )
      : el('li', { class: 'muted' }, 'no servers listed'),
  );
}
