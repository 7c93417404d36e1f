// Switchboard demo page: a customer chat and an agent console on top of the client SDK.
// Plain ES module, no build step. User content is only ever written with textContent.
import { ChatClient } from '/sdk/index.js';

const TOKEN_KEY = 'switchboard.token';
const USER_KEY = 'switchboard.user';
const SESSION_KEY = 'switchboard.session';
/** Sends not acknowledged yet, of every user of the tab: [{ userId, sessionId, content, clientMsgId }]. */
const OUTBOX_KEY = 'switchboard.outbox';
const AGENT_REFRESH_MS = 5000;
const HISTORY_PAGE = 50;
const SESSION_LIST_LIMIT = 100;
/**
 * Conversations kept joined, the most recently opened: their new messages still mark them unread
 * in the list. Opening another one leaves the one opened longest ago, so a reconnect rejoins only
 * these, and the gateway's limit of sessions per connection (MAX_SESSIONS_PER_CONNECTION, read
 * from /config.json at boot into state.joinedLimit) is never reached however many are opened.
 */
const JOINED_LIMIT = 20;
/** The gateway's MAX_CONTENT_CHARS by default; /config.json gives the gateway's own at boot. */
const MAX_CONTENT_CHARS = 4000;
const COMPOSER_HINT = 'Enter sends, Shift+Enter adds a line.';
/** The client SDK's error codes that say "not now" rather than "not at all". */
const PASSING_ERRORS = new Set(['unavailable', 'rate_limited']);

const STATE_LABELS = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  authenticating: 'Signing in…',
  ready: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
};

const ROLE_LABELS = { user: 'Customer', agent: 'Agent', admin: 'Admin' };

const AUTH_ERRORS = {
  invalid_credentials: 'Wrong username or password.',
  username_taken: 'That username is already taken. Pick another one, or log in.',
  too_many_requests: 'Too many attempts. Wait a moment and try again.',
};

function element(selector) {
  const found = document.querySelector(selector);
  if (!found) throw new Error(`the page has no ${selector}`);
  return found;
}

const ui = {
  loading: element('#loading'),
  notice: element('#notice'),
  connection: element('[data-testid="connection-state"]'),
  currentUser: element('[data-testid="current-user"]'),
  logout: element('[data-testid="logout"]'),
  loginView: element('#login-view'),
  loginForm: element('#login-form'),
  username: element('[data-testid="username"]'),
  password: element('[data-testid="password"]'),
  chatView: element('#chat-view'),
  startForm: element('#start-form'),
  subject: element('[data-testid="subject"]'),
  sessionsTitle: element('#sessions-title'),
  sessionList: element('#session-list'),
  sessionsEmpty: element('#sessions-empty'),
  olderSessions: element('#older-sessions'),
  refresh: element('[data-testid="refresh-sessions"]'),
  conversationTitle: element('#conversation-title'),
  conversationMeta: element('#conversation-meta'),
  conversationStatus: element('#conversation-status'),
  conversationStatusText: element('#conversation-status-text'),
  conversationRetry: element('[data-testid="conversation-retry"]'),
  messages: element('#messages'),
  loadEarlier: element('#load-earlier'),
  messagesEmpty: element('#messages-empty'),
  messageList: element('[data-testid="message-list"]'),
  composerForm: element('#composer-form'),
  composer: element('[data-testid="composer"]'),
  composerHint: element('#composer-hint'),
  send: element('[data-testid="send"]'),
};

const state = {
  authUrl: '',
  /** @type {ChatClient | null} */
  client: null,
  unsubscribe: [],
  user: null,
  connection: 'idle',
  sessions: new Map(),
  /** Sessions of the pages after the first that "Show older conversations" brought, by id. */
  olderSessions: new Map(),
  /** Whether sessions come after the last one listed. */
  sessionsHaveMore: false,
  refreshing: null,
  refreshTimer: 0,
  openSessionId: null,
  /** Bumped on every open so late answers for a conversation no longer shown are dropped. */
  openGeneration: 0,
  /** seq → list item of the open conversation. */
  messages: new Map(),
  /**
   * Sends not acknowledged yet, by session, whichever conversation is open: { sessionId, content,
   * clientMsgId, item, failed }. Kept when another conversation is opened, so a message still
   * queued in the SDK shows again with its conversation, and its failure is never dropped.
   */
  pending: new Map(),
  /** At most this many conversations kept joined: JOINED_LIMIT, or the gateway's lower limit. */
  joinedLimit: JOINED_LIMIT,
  /** The longest message the gateway takes, in Unicode code points (as the gateway counts). */
  maxContentChars: MAX_CONTENT_CHARS,
  /** The largest frame the gateway takes (its MAX_FRAME_BYTES), once /config.json has said. */
  maxFrameBytes: undefined,
  /** The frames a second the gateway takes from a socket (its RATE_LIMIT_PER_SEC), once /config.json has said. */
  rateLimitPerSec: undefined,
  /** Session ids joined (or being joined) with the client, the most recently opened last; at most joinedLimit. */
  joinedRecently: new Set(),
  /** The open conversation is joined: until then its messages do not reach the page, and sending is off. */
  joined: false,
  /**
   * What finishes opening the conversation after it failed for a passing reason (the join, or its
   * first page of history): run by the Retry button, and again on the next 'ready'.
   */
  retry: null,
  oldestSeq: null,
  hasMore: false,
  /**
   * What was typed and not sent, by conversation: kept when another one is opened and put back
   * when it is opened again, so that a reply begun for one customer never goes to another.
   */
  drafts: new Map(),
  /** The notice shown tells of the connection, or of a list not read: taken down once they are back. */
  passingNotice: false,
  /**
   * What the user whose sign-in ran out had typed and had open ({ userId, drafts, sessionId,
   * subject }): given back when the same user logs in again on this page, dropped for anyone else.
   */
  lapsed: null,
};

// ---------------------------------------------------------------- small helpers

function describeError(error) {
  if (error && typeof error === 'object' && 'message' in error && typeof error.message === 'string' && error.message) {
    return error.message;
  }
  return String(error);
}

/**
 * Shows `text` above the chat. With `passing`, it tells of the connection or a list that could not
 * be read: it is taken down once the client is connected again (and the list read), where before
 * it stayed on screen, saying the chat was down while it worked.
 */
function showNotice(text, { passing = false } = {}) {
  // A notice that stays is not replaced by one that goes: it would go with it.
  if (passing && !ui.notice.hidden && !state.passingNotice) return;
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  state.passingNotice = passing;
}

function hidePassingNotice() {
  if (state.passingNotice) hideNotice();
}

function hideNotice() {
  state.passingNotice = false;
  ui.notice.hidden = true;
  ui.notice.textContent = '';
}

function setFormBusy(form, busy) {
  for (const control of form.querySelectorAll('button, input')) control.disabled = busy;
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return date.toDateString() === new Date().toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

function span(className, text) {
  const node = document.createElement('span');
  node.className = className;
  node.textContent = text;
  return node;
}

function isStaff(user) {
  return user?.role === 'agent' || user?.role === 'admin';
}

function readStoredUser() {
  try {
    const user = JSON.parse(sessionStorage.getItem(USER_KEY) ?? 'null');
    return user && typeof user.id === 'number' && typeof user.role === 'string' ? user : null;
  } catch {
    return null;
  }
}

/** A client_msg_id. crypto.randomUUID exists only in secure contexts; getRandomValues everywhere. */
function newClientMsgId() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

function webSocketUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

// ---------------------------------------------------------------- auth API

async function authRequest(path, body) {
  let response;
  try {
    response = await fetch(`${state.authUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch {
    throw new Error(`Cannot reach the sign-in service at ${state.authUrl}.`);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const code = payload?.error?.code;
    throw new Error(AUTH_ERRORS[code] ?? payload?.error?.message ?? `The sign-in service answered ${response.status}.`);
  }
  return payload;
}

async function submitLogin(action) {
  hideNotice();
  if (!ui.loginForm.reportValidity()) return;
  const username = ui.username.value.trim();
  const password = ui.password.value;
  setFormBusy(ui.loginForm, true);
  try {
    if (action === 'register') await authRequest('/v1/users', { username, password });
    const { access_token: token, user } = await authRequest('/v1/token', { username, password });
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
    sessionStorage.removeItem(SESSION_KEY);
    resumeLapsed(user);
    ui.password.value = '';
    void startChat(user);
    // The form the focus was in is gone: a keyboard or screen-reader user goes on where the work is.
    (isStaff(user) ? ui.sessionsTitle : ui.subject).focus();
  } catch (error) {
    showNotice(describeError(error));
  } finally {
    setFormBusy(ui.loginForm, false);
  }
}

// ---------------------------------------------------------------- views

function showLogin() {
  ui.loading.hidden = true;
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  ui.currentUser.hidden = true;
  ui.logout.hidden = true;
  setConnection('idle');
  ui.username.focus();
}

function showChatView(user) {
  ui.loading.hidden = true;
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.logout.hidden = false;
  showUser(user);
  const staff = isStaff(user);
  document.body.classList.toggle('is-staff', staff);
  ui.startForm.hidden = staff;
  ui.sessionsTitle.textContent = staff ? 'Open conversations' : 'Your conversations';
  ui.sessionsEmpty.textContent = staff ? 'No open conversations right now.' : 'No conversations yet. Start one above.';
  closeConversation();
}

function showUser(user) {
  ui.currentUser.hidden = false;
  ui.currentUser.textContent = '';
  ui.currentUser.append(span('current-user-name', user.username), span('role-badge', ROLE_LABELS[user.role] ?? user.role));
}

function setConnection(connection) {
  state.connection = connection;
  ui.connection.dataset.state = connection;
  ui.connection.textContent = STATE_LABELS[connection] ?? connection;
}

// ---------------------------------------------------------------- connection

async function startChat(user) {
  stopChat();
  state.user = user;
  showChatView(user);
  const client = new ChatClient({
    url: webSocketUrl(),
    token: () => sessionStorage.getItem(TOKEN_KEY) ?? '',
    // The gateway's own, from /config.json: with a larger MAX_CONTENT_CHARS, a message the composer
    // takes could be larger than the SDK's default frame, and refused before it went out.
    ...(state.maxFrameBytes === undefined ? {} : { maxFrameBytes: state.maxFrameBytes }),
    // Paced under the gateway's own rate, with bursts of one and a half times it (the gateway
    // takes twice): with a lower RATE_LIMIT_PER_SEC, a reconnect's rejoins and resends would
    // otherwise be refused as rate_limited, and retried with backoff.
    ...(state.rateLimitPerSec === undefined
      ? {}
      : { maxFramesPerSec: state.rateLimitPerSec, frameBurst: Math.max(1, Math.floor(state.rateLimitPerSec * 1.5)) }),
  });
  state.client = client;
  state.unsubscribe = [
    client.on('state', (connection) => {
      if (state.client !== client) return;
      setConnection(connection);
      if (connection === 'ready') {
        hidePassingNotice();
        void refreshSessions();
        retryConversation();
      }
    }),
    client.on('message', (message) => {
      if (state.client === client) onMessage(message);
    }),
    client.on('auth_failed', () => {
      if (state.client === client) {
        logout('Your sign-in has run out. Log in again to carry on where you were: what you typed is kept.', { keepWork: true });
      }
    }),
    client.on('error', (error) => {
      // Refused for now (an auth over the gateway's limit, the backend down): gone once connected.
      // Others stay: a conversation that could not be joined again gets nothing more.
      if (state.client === client) showNotice(describeError(error), { passing: PASSING_ERRORS.has(error?.code) });
    }),
  ];
  try {
    await client.connect();
  } catch (error) {
    if (state.client !== client) return;
    showNotice(`Cannot connect to the chat server: ${describeError(error)}`, { passing: true });
    return;
  }
  if (state.client !== client) return;
  if (client.user) {
    state.user = client.user;
    sessionStorage.setItem(USER_KEY, JSON.stringify(client.user));
    showUser(client.user);
  }
  await refreshSessions();
  if (state.client !== client) return;
  resendOutbox();
  if (isStaff(state.user)) {
    state.refreshTimer = window.setInterval(() => {
      if (state.connection === 'ready') void refreshSessions();
    }, AGENT_REFRESH_MS);
  }
  const saved = Number(sessionStorage.getItem(SESSION_KEY));
  if (state.client === client && Number.isInteger(saved) && saved > 0) await openSession(saved);
}

function stopChat() {
  window.clearInterval(state.refreshTimer);
  state.refreshTimer = 0;
  for (const unsubscribe of state.unsubscribe) unsubscribe();
  state.unsubscribe = [];
  const client = state.client;
  state.client = null;
  client?.close();
  state.sessions = new Map();
  state.olderSessions = new Map();
  state.sessionsHaveMore = false;
  ui.olderSessions.hidden = true;
  state.pending = new Map();
  state.joinedRecently = new Set();
  state.refreshing = null;
  ui.sessionList.replaceChildren();
}

/**
 * Back to the login form. With `keepWork` (the sign-in ran out: the page cannot renew its token),
 * what was typed and the conversation open are kept for the same user's next log-in: before, a
 * reply half written was lost every ACCESS_TOKEN_TTL.
 */
function logout(message, { keepWork = false } = {}) {
  const user = state.user;
  const openSessionId = state.openSessionId ?? (Number(sessionStorage.getItem(SESSION_KEY)) || null);
  stopChat();
  closeConversation();
  state.lapsed = keepWork && user ? { userId: user.id, drafts: state.drafts, sessionId: openSessionId, subject: ui.subject.value } : null;
  // Nothing typed by this user is left for the next one to sign in on this page.
  state.drafts = new Map();
  ui.subject.value = '';
  state.user = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  sessionStorage.removeItem(SESSION_KEY);
  document.body.classList.remove('is-staff');
  showLogin();
  if (keepWork && user) {
    ui.username.value = user.username;
    ui.password.focus();
  }
  if (message) showNotice(message);
  else hideNotice();
}

/** Gives `user` back what they had typed and open when their sign-in ran out, if it was theirs. */
function resumeLapsed(user) {
  const lapsed = state.lapsed;
  state.lapsed = null;
  if (lapsed?.userId !== user.id) return;
  state.drafts = lapsed.drafts;
  ui.subject.value = lapsed.subject;
  if (lapsed.sessionId !== null) sessionStorage.setItem(SESSION_KEY, String(lapsed.sessionId));
}

// ---------------------------------------------------------------- sessions

function refreshSessions() {
  const client = state.client;
  if (!client) return Promise.resolve();
  if (state.refreshing) return state.refreshing;
  state.refreshing = client
    .listSessionsPage(sessionFilter())
    .then(({ sessions, hasMore }) => {
      if (state.client !== client) return;
      // The first page, then the older ones shown, which a refresh keeps.
      const first = new Set(sessions.map((session) => session.id));
      const older = [...state.olderSessions.values()].filter((session) => !first.has(session.id));
      renderSessions([...sessions, ...older]);
      if (older.length === 0) state.sessionsHaveMore = hasMore;
      ui.olderSessions.hidden = !state.sessionsHaveMore;
      hidePassingNotice();
    })
    .catch((error) => {
      if (state.client === client && state.connection === 'ready') {
        showNotice(`Cannot load conversations: ${describeError(error)}`, { passing: true });
      }
    })
    .finally(() => {
      if (state.client === client) state.refreshing = null;
    });
  return state.refreshing;
}

/** Which sessions the list shows: agents the open ones, customers their own. */
function sessionFilter() {
  return isStaff(state.user) ? { status: 'open', limit: SESSION_LIST_LIMIT } : { limit: SESSION_LIST_LIMIT };
}

/** The next page of the list, after the last session shown. */
async function showOlderSessions() {
  const client = state.client;
  const last = [...state.sessions.values()].at(-1);
  if (!client || !last || ui.olderSessions.disabled) return;
  ui.olderSessions.disabled = true;
  try {
    const { sessions, hasMore } = await client.listSessionsPage({ ...sessionFilter(), beforeId: last.id });
    if (state.client !== client) return;
    for (const session of sessions) state.olderSessions.set(session.id, session);
    state.sessionsHaveMore = hasMore;
    renderSessions([...state.sessions.values(), ...sessions.filter((session) => !state.sessions.has(session.id))]);
    ui.olderSessions.hidden = !hasMore;
  } catch (error) {
    if (state.client === client) showNotice(`Cannot load older conversations: ${describeError(error)}`, { passing: true });
  } finally {
    ui.olderSessions.disabled = false;
  }
}

function sessionTitle(session) {
  return session.subject ? session.subject : `Conversation #${session.id}`;
}

function sessionDetails(session) {
  const parts = [];
  if (isStaff(state.user)) parts.push(`Customer #${session.customer_id}`);
  if (typeof session.last_seq === 'number') parts.push(session.last_seq === 1 ? '1 message' : `${session.last_seq} messages`);
  parts.push(`started ${formatTime(session.created_at)}`);
  return parts.join(' · ');
}

function fillSessionItem(button, session) {
  button.replaceChildren(
    span('session-title', sessionTitle(session)),
    span('session-id', `#${session.id}`),
    span('session-details', sessionDetails(session)),
  );
  if (button.classList.contains('unread')) button.append(span('unread-badge', 'new'));
}

function createSessionItem(session) {
  const item = document.createElement('li');
  item.dataset.sessionId = String(session.id);
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'session';
  button.dataset.testid = 'session-item';
  button.dataset.sessionId = String(session.id);
  button.addEventListener('click', () => {
    void openSession(session.id);
  });
  item.append(button);
  return item;
}

function sessionButton(sessionId) {
  return ui.sessionList.querySelector(`button[data-session-id="${sessionId}"]`);
}

function renderSessions(sessions) {
  state.sessions = new Map(sessions.map((session) => [session.id, session]));
  const existing = new Map();
  for (const item of ui.sessionList.children) existing.set(Number(item.dataset.sessionId), item);
  let previous = null;
  for (const session of sessions) {
    let item = existing.get(session.id);
    if (item) existing.delete(session.id);
    else item = createSessionItem(session);
    const button = item.firstElementChild;
    fillSessionItem(button, session);
    markCurrent(button, session.id === state.openSessionId);
    const wanted = previous ? previous.nextElementSibling : ui.sessionList.firstElementChild;
    if (wanted !== item) ui.sessionList.insertBefore(item, wanted);
    previous = item;
  }
  for (const item of existing.values()) item.remove();
  ui.sessionsEmpty.hidden = sessions.length > 0;
  const open = state.openSessionId === null ? undefined : state.sessions.get(state.openSessionId);
  if (open) showConversationHeader(open);
}

function markCurrent(button, current) {
  if (current) {
    button.setAttribute('aria-current', 'true');
    button.classList.remove('unread');
    button.querySelector('.unread-badge')?.remove();
  } else {
    button.removeAttribute('aria-current');
  }
}

function markCurrentSession() {
  for (const button of ui.sessionList.querySelectorAll('button.session')) {
    markCurrent(button, Number(button.dataset.sessionId) === state.openSessionId);
  }
}

/** Keeps the list's message counts current between refreshes and flags activity elsewhere. */
function noteSessionActivity(message) {
  const session = state.sessions.get(message.session_id);
  if (!session) return;
  if (typeof session.last_seq !== 'number' || message.seq > session.last_seq) session.last_seq = message.seq;
  const button = sessionButton(message.session_id);
  if (!button) return;
  if (message.session_id !== state.openSessionId && message.sender_id !== state.user?.id) button.classList.add('unread');
  fillSessionItem(button, session);
}

async function startSession() {
  const client = state.client;
  if (!client) return;
  hideNotice();
  setFormBusy(ui.startForm, true);
  try {
    const subject = ui.subject.value.trim();
    const session = await client.createSession(subject || undefined);
    if (state.client !== client) return;
    ui.subject.value = '';
    await refreshSessions();
    if (!state.sessions.has(session.id)) renderSessions([{ ...session, last_seq: 0 }, ...state.sessions.values()]);
    await openSession(session.id);
    ui.composer.focus();
  } catch (error) {
    showNotice(`Cannot start a chat: ${describeError(error)}`);
  } finally {
    setFormBusy(ui.startForm, false);
  }
}

// ---------------------------------------------------------------- conversation

function closeConversation() {
  if (state.openSessionId !== null) {
    const draft = ui.composer.value;
    if (draft.trim()) state.drafts.set(state.openSessionId, draft);
    else state.drafts.delete(state.openSessionId);
  }
  setComposer('');
  state.openGeneration++;
  state.openSessionId = null;
  state.messages = new Map();
  state.joined = false;
  state.oldestSeq = null;
  state.hasMore = false;
  // Pending items are only taken off the page: they stay in state.pending with their conversation.
  ui.messageList.replaceChildren();
  ui.loadEarlier.hidden = true;
  ui.conversationTitle.textContent = 'No conversation open';
  ui.conversationMeta.textContent = '';
  hideConversationProblem();
  setComposerEnabled(false);
  updateEmptyState();
  markCurrentSession();
}

function setComposerEnabled(enabled) {
  ui.composer.disabled = !enabled;
  ui.send.disabled = !enabled;
  ui.composer.placeholder = enabled || state.openSessionId === null ? 'Write a message…' : 'Opening the conversation…';
}

/** A problem with the open conversation, shown above its messages, with a Retry button doing `retry`. */
function showConversationProblem(text, retry) {
  ui.conversationStatusText.textContent = text;
  state.retry = retry;
  ui.conversationStatus.hidden = false;
}

function hideConversationProblem() {
  state.retry = null;
  ui.conversationStatus.hidden = true;
  ui.conversationStatusText.textContent = '';
}

function showConversationHeader(session) {
  ui.conversationTitle.textContent = sessionTitle(session);
  ui.conversationMeta.textContent = `#${session.id} · ${isStaff(state.user) ? `customer #${session.customer_id} · ` : ''}started ${formatTime(session.created_at)}`;
}

function pendingOf(sessionId) {
  return state.pending.get(sessionId) ?? [];
}

function updateEmptyState() {
  const empty = state.messages.size === 0 && pendingOf(state.openSessionId).length === 0;
  ui.messagesEmpty.hidden = !empty;
  ui.messagesEmpty.textContent =
    state.openSessionId === null
      ? isStaff(state.user)
        ? 'Pick a conversation to see its messages.'
        : 'Start a chat or pick one of your conversations.'
      : 'No messages yet. Say hello!';
}

async function openSession(sessionId) {
  const client = state.client;
  if (!client) return;
  closeConversation();
  const generation = state.openGeneration;
  state.openSessionId = sessionId;
  setComposer(state.drafts.get(sessionId) ?? '');
  sessionStorage.setItem(SESSION_KEY, String(sessionId));
  const known = state.sessions.get(sessionId);
  if (known) showConversationHeader(known);
  else ui.conversationTitle.textContent = `Conversation #${sessionId}`;
  for (const entry of pendingOf(sessionId)) ui.messageList.append(entry.item);
  updateEmptyState();
  markCurrentSession();
  keepJoined(client, sessionId);
  await joinConversation(client, sessionId, generation);
}

/**
 * Makes the conversation the most recently opened of those kept joined, and leaves the ones
 * opened longest ago beyond state.joinedLimit. The leave goes out before the join that follows, so the
 * gateway never holds more than the limit. Sends to a left conversation still go through: sending
 * needs no join.
 */
function keepJoined(client, sessionId) {
  state.joinedRecently.delete(sessionId);
  state.joinedRecently.add(sessionId);
  for (const oldest of state.joinedRecently) {
    if (state.joinedRecently.size <= state.joinedLimit) break;
    state.joinedRecently.delete(oldest);
    // A leave that fails is harmless: the client forgets the session at once, and the gateway's
    // membership ends with the connection.
    client.leave(oldest).catch(() => undefined);
  }
}

/**
 * Joins the open conversation, then loads its latest messages. Sending stays off until the join
 * is answered: before that the SDK does not follow the session, so the other side's messages
 * would never show. A join that fails for a passing reason (no answer in time, the backend
 * unavailable) is tried again when the connection is next ready, or at once from Retry.
 */
async function joinConversation(client, sessionId, generation) {
  hideConversationProblem();
  setComposerEnabled(false);
  let lastSeq;
  try {
    ({ lastSeq } = await client.join(sessionId));
  } catch (error) {
    if (generation !== state.openGeneration || state.client !== client) return;
    const code = error && typeof error === 'object' ? error.code : undefined;
    if (code === 'not_found' || code === 'forbidden') {
      state.joinedRecently.delete(sessionId);
      sessionStorage.removeItem(SESSION_KEY);
      closeConversation();
      showNotice(`Cannot open conversation #${sessionId}: ${describeError(error)}`);
      return;
    }
    // Tried again on the next 'ready' too: after a reconnect, or once the backend is back.
    showConversationProblem(`Cannot open this conversation: ${describeError(error)}`, () =>
      joinConversation(client, sessionId, generation),
    );
    return;
  }
  if (generation !== state.openGeneration || state.client !== client) return;
  state.joined = true;
  setComposerEnabled(true);
  // Live messages start after lastSeq; everything up to it comes from history.
  if (lastSeq > 0) await loadFirstPage(sessionId, lastSeq + 1, generation);
  if (generation === state.openGeneration) scrollToBottom();
}

/** The newest page of history. On failure "Load earlier" stays hidden, so it is retried here: on the next 'ready', or from Retry. */
async function loadFirstPage(sessionId, beforeSeq, generation) {
  hideConversationProblem();
  try {
    await loadHistory(sessionId, beforeSeq, generation);
  } catch (error) {
    if (generation !== state.openGeneration) return;
    showConversationProblem(`Cannot load the messages: ${describeError(error)}`, () => loadFirstPage(sessionId, beforeSeq, generation));
  }
}

/** Runs what the conversation's Retry button does, if anything: from the button, or when the connection is ready again. */
function retryConversation() {
  const retry = state.retry;
  if (retry) void retry();
}

async function loadHistory(sessionId, beforeSeq, generation) {
  const client = state.client;
  if (!client) return;
  const { messages, hasMore } = await client.history(sessionId, { beforeSeq, limit: HISTORY_PAGE });
  if (generation !== state.openGeneration) return;
  for (const message of messages) {
    // A message of ours stored while its send still waits for the ack (lost with a connection,
    // say): the stored copy replaces the greyed one.
    removeStoredPending(message);
    if (!state.messages.has(message.seq)) upsertMessage(message);
  }
  const first = messages[0];
  if (first && (state.oldestSeq === null || first.seq < state.oldestSeq)) state.oldestSeq = first.seq;
  state.hasMore = hasMore && first !== undefined;
  ui.loadEarlier.hidden = !state.hasMore;
}

async function loadEarlier() {
  if (state.openSessionId === null || state.oldestSeq === null) return;
  const generation = state.openGeneration;
  const before = ui.messages.scrollHeight - ui.messages.scrollTop;
  ui.loadEarlier.disabled = true;
  try {
    await loadHistory(state.openSessionId, state.oldestSeq, generation);
    // Keep the messages that were on screen where they were.
    ui.messages.scrollTop = ui.messages.scrollHeight - before;
  } catch (error) {
    showNotice(`Cannot load earlier messages: ${describeError(error)}`);
  } finally {
    ui.loadEarlier.disabled = false;
  }
}

function renderMessage(message, { pending = false } = {}) {
  const own = message.sender_id === state.user?.id;
  const item = document.createElement('li');
  item.className = `message${own ? ' own' : ''}${pending ? ' pending' : ''}`;
  if (pending) {
    item.dataset.testid = 'pending-message';
  } else {
    item.dataset.testid = 'message';
    item.dataset.seq = String(message.seq);
  }
  const meta = document.createElement('div');
  meta.className = 'message-meta';
  meta.append(span('message-sender', own ? 'You' : (ROLE_LABELS[message.sender_role] ?? message.sender_role)));
  if (pending) {
    meta.append(span('message-status', 'Sending…'));
  } else {
    const time = document.createElement('time');
    time.dateTime = message.created_at;
    time.textContent = formatTime(message.created_at);
    meta.append(time);
  }
  const body = document.createElement('p');
  body.className = 'message-body';
  body.textContent = message.content;
  item.append(meta, body);
  return item;
}

function isNearBottom() {
  return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

/** Shows a stored message at its place by seq; a seq already shown is replaced, never doubled. */
function upsertMessage(message) {
  const stick = isNearBottom();
  const item = renderMessage(message);
  const existing = state.messages.get(message.seq);
  if (existing) {
    existing.replaceWith(item);
  } else {
    let before = null;
    for (const child of ui.messageList.children) {
      const seq = Number(child.dataset.seq);
      if (!child.dataset.seq || seq > message.seq) {
        before = child;
        break;
      }
    }
    ui.messageList.insertBefore(item, before);
  }
  state.messages.set(message.seq, item);
  updateEmptyState();
  if (stick) scrollToBottom();
}

function onMessage(message) {
  noteSessionActivity(message);
  // Our own message came back before its ack: it replaces the greyed copy.
  removeStoredPending(message);
  if (message.session_id !== state.openSessionId) return;
  if (!state.messages.has(message.seq)) upsertMessage(message);
}

/**
 * Sends a message kept in state.pending. Its outcome is applied whichever conversation is open
 * by then: the ack replaces the greyed copy, and a failure marks it, with a notice when the
 * conversation is not the one on screen.
 */
async function sendPending(entry) {
  const client = state.client;
  if (!client) return;
  let ack;
  try {
    ack = await client.send(entry.sessionId, entry.content, { clientMsgId: entry.clientMsgId });
  } catch (error) {
    if (state.client !== client || !pendingOf(entry.sessionId).includes(entry)) return;
    markFailed(entry, describeError(error));
    if (entry.sessionId !== state.openSessionId) {
      const session = state.sessions.get(entry.sessionId);
      const title = session ? sessionTitle(session) : `conversation #${entry.sessionId}`;
      showNotice(`A message to ${title} was not sent: ${describeError(error)}. Open the conversation to retry it.`);
    }
    return;
  }
  if (state.client !== client) return;
  removePending(entry);
  if (entry.sessionId !== state.openSessionId || state.messages.has(ack.seq)) return;
  upsertMessage({
    id: ack.messageId,
    session_id: entry.sessionId,
    seq: ack.seq,
    sender_id: state.user?.id,
    sender_role: state.user?.role,
    content: entry.content,
    client_msg_id: ack.clientMsgId,
    created_at: new Date().toISOString(),
  });
}

/** Keeps a send in state.pending, and in the tab's outbox, until it is acknowledged. */
function addPending(sessionId, content, clientMsgId) {
  const item = renderMessage({ content, sender_id: state.user?.id, sender_role: state.user?.role }, { pending: true });
  const entry = { sessionId, content, clientMsgId, item, failed: false };
  const entries = pendingOf(sessionId);
  state.pending.set(sessionId, entries);
  entries.push(entry);
  saveOutbox();
  return entry;
}

/** The greyed copy of a message of ours that is stored, if one is shown: it goes. */
function removeStoredPending(message) {
  const sent = pendingOf(message.session_id).find((entry) => entry.clientMsgId === message.client_msg_id);
  if (sent) removePending(sent);
}

function removePending(entry) {
  entry.item.remove();
  const entries = pendingOf(entry.sessionId);
  const index = entries.indexOf(entry);
  if (index >= 0) entries.splice(index, 1);
  if (entries.length === 0) state.pending.delete(entry.sessionId);
  saveOutbox();
  updateEmptyState();
}

function readOutbox() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(OUTBOX_KEY) ?? '[]');
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

/**
 * The tab's outbox outlives the page and the log-in: a message still "Sending…" when the page is
 * reloaded, or when the sign-in runs out, is sent again after it with its client_msg_id, so it is
 * neither lost nor stored twice.
 */
function saveOutbox() {
  const kept = othersOutbox();
  const userId = state.user?.id;
  for (const entries of state.pending.values()) {
    // One refused for good (too large, forbidden) is not sent again by itself: its Retry button is the user's.
    for (const { sessionId, content, clientMsgId, failed } of entries) if (!failed) kept.push({ userId, sessionId, content, clientMsgId });
  }
  writeOutbox(kept);
}

/** The outbox's entries of every user but the one logged in. */
function othersOutbox() {
  const userId = state.user?.id;
  return readOutbox().filter((saved) => saved?.userId !== userId);
}

function writeOutbox(entries) {
  if (entries.length === 0) sessionStorage.removeItem(OUTBOX_KEY);
  else sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(entries));
}

/** Sends again what the outbox holds for the user logged in, oldest first. */
function resendOutbox() {
  for (const saved of readOutbox()) {
    if (saved?.userId !== state.user?.id || !Number.isInteger(saved.sessionId)) continue;
    if (typeof saved.content !== 'string' || typeof saved.clientMsgId !== 'string') continue;
    if (pendingOf(saved.sessionId).some((entry) => entry.clientMsgId === saved.clientMsgId)) continue;
    void sendPending(addPending(saved.sessionId, saved.content, saved.clientMsgId));
  }
}

function markFailed(entry, reason) {
  entry.failed = true;
  saveOutbox();
  entry.item.classList.add('failed');
  const status = entry.item.querySelector('.message-status');
  if (status) status.textContent = `Not sent: ${reason}`;
  const retry = document.createElement('button');
  retry.type = 'button';
  retry.className = 'button button-quiet button-small';
  retry.textContent = 'Retry';
  retry.addEventListener('click', () => {
    entry.failed = false;
    saveOutbox();
    entry.item.classList.remove('failed');
    retry.remove();
    if (status) status.textContent = 'Sending…';
    // The same client_msg_id: should the first attempt have been stored after all, it is not stored twice.
    void sendPending(entry);
  });
  entry.item.querySelector('.message-meta')?.append(retry);
}

/**
 * How many characters the composer holds over the gateway's limit; 0 when within it. The textarea
 * has no maxlength: a paste longer than that was cut without a word (and maxlength counts an
 * emoji as two, the gateway as one), so the text is kept whole and the hint says how much to cut.
 */
function composerExcess() {
  return Math.max(0, [...ui.composer.value].length - state.maxContentChars);
}

/** Puts `text` in the composer, with the hint that goes with it. */
function setComposer(text) {
  ui.composer.value = text;
  updateComposerHint();
}

function updateComposerHint() {
  const excess = composerExcess();
  ui.composerHint.classList.toggle('is-over', excess > 0);
  ui.composerHint.textContent =
    excess > 0 ? `${excess} ${excess === 1 ? 'character' : 'characters'} over the limit of ${state.maxContentChars}.` : COMPOSER_HINT;
}

function sendFromComposer() {
  const content = ui.composer.value;
  const sessionId = state.openSessionId;
  if (!content.trim() || sessionId === null || !state.joined || composerExcess() > 0) return;
  setComposer('');
  ui.composer.focus();
  const entry = addPending(sessionId, content, newClientMsgId());
  ui.messageList.append(entry.item);
  updateEmptyState();
  scrollToBottom();
  void sendPending(entry);
}

// ---------------------------------------------------------------- wiring

ui.loginForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const submitter = event.submitter;
  void submitLogin(submitter instanceof HTMLButtonElement ? submitter.value : 'login');
});

/**
 * Logging out on purpose discards what is still unsent, once the user agrees: kept in the tab's
 * outbox, it was read by whoever used the tab next, and sent when its author next logged in here,
 * maybe hours later and already written again. (A sign-in that runs out keeps it, to send after.)
 */
ui.logout.addEventListener('click', () => {
  const unsent = [...state.pending.values()].reduce((count, entries) => count + entries.length, 0);
  const question =
    unsent === 1 ? 'A message is not sent yet. Log out and discard it?' : `${unsent} messages are not sent yet. Log out and discard them?`;
  if (unsent > 0 && !window.confirm(question)) return;
  writeOutbox(othersOutbox());
  logout();
});

ui.startForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void startSession();
});

ui.refresh.addEventListener('click', () => {
  void refreshSessions();
});

ui.loadEarlier.addEventListener('click', () => {
  void loadEarlier();
});

ui.olderSessions.addEventListener('click', () => {
  void showOlderSessions();
});

ui.conversationRetry.addEventListener('click', retryConversation);

ui.composerForm.addEventListener('submit', (event) => {
  event.preventDefault();
  sendFromComposer();
});

ui.composer.addEventListener('input', updateComposerHint);

ui.composer.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendFromComposer();
  }
});

async function boot() {
  let authUrl = null;
  let authPort = 2347;
  try {
    const config = await (await fetch('/config.json')).json();
    if (typeof config?.authUrl === 'string' && config.authUrl) authUrl = config.authUrl;
    if (Number.isInteger(config?.authPort)) authPort = config.authPort;
    const gatewayLimit = config?.maxSessionsPerConnection;
    if (Number.isInteger(gatewayLimit) && gatewayLimit > 0) state.joinedLimit = Math.min(JOINED_LIMIT, gatewayLimit);
    if (Number.isInteger(config?.maxContentChars) && config.maxContentChars > 0) state.maxContentChars = config.maxContentChars;
    if (Number.isInteger(config?.maxFrameBytes) && config.maxFrameBytes > 0) state.maxFrameBytes = config.maxFrameBytes;
    if (Number.isInteger(config?.rateLimitPerSec) && config.rateLimitPerSec > 0) state.rateLimitPerSec = config.rateLimitPerSec;
  } catch {
    authUrl = null;
  }
  state.authUrl = (authUrl ?? `${location.protocol}//${location.hostname}:${authPort}`).replace(/\/+$/, '');
  const token = sessionStorage.getItem(TOKEN_KEY);
  const user = readStoredUser();
  if (token && user) await startChat(user);
  else showLogin();
}

void boot();
