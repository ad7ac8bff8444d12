// The mqtt-proxy web console: the app flow of README.md "Two ways to
// authenticate", in a browser.
//
//   1. POST /v1/login (user, password) -> a session; POST /v1/sessions/validate
//      with it -> the user's groups and ACL (auth/API.md).
//   2. MQTT over WebSocket to the proxy (MQTT.js), CONNECT with no password;
//      the proxy answers the CONNACK itself.
//   3. PUBLISH the session to service/auth/<session>; the proxy answers on the
//      same topic: {"result":"ok",...} or {"result":"denied","reason":...}.
//   4. SUBSCRIBE to the ACL's subscribe filters; show every SUBACK reason code,
//      every PUBACK reason code (5.0), every message that arrives.
//
// The session lives in this page's memory only (a reload logs out). It is
// refreshed before it expires (POST /v1/sessions/refresh, then a new auth
// PUBLISH, which the proxy takes as a re-authentication); when it cannot be,
// the page asks for a new login. A lost connection is retried with backoff.
// Everything a peer sends is shown with textContent, never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // MQTT 5.0 reason codes [MQTT-2.4]; 3.1.1 knows only 0x80 in a SUBACK.
  const REASON_NAMES = {
    0x00: 'Success', 0x01: 'Granted QoS 1', 0x02: 'Granted QoS 2', 0x04: 'Disconnect with Will Message',
    0x10: 'No matching subscribers', 0x11: 'No subscription existed', 0x80: 'Unspecified error',
    0x81: 'Malformed Packet', 0x82: 'Protocol Error', 0x83: 'Implementation specific error',
    0x84: 'Unsupported Protocol Version', 0x85: 'Client Identifier not valid', 0x86: 'Bad User Name or Password',
    0x87: 'Not authorized', 0x88: 'Server unavailable', 0x89: 'Server busy', 0x8a: 'Banned',
    0x8b: 'Server shutting down', 0x8c: 'Bad authentication method', 0x8d: 'Keep Alive timeout',
    0x8e: 'Session taken over', 0x8f: 'Topic Filter invalid', 0x90: 'Topic Name invalid',
    0x91: 'Packet Identifier in use', 0x92: 'Packet Identifier not found', 0x93: 'Receive Maximum exceeded',
    0x94: 'Topic Alias invalid', 0x95: 'Packet too large', 0x96: 'Message rate too high', 0x97: 'Quota exceeded',
    0x98: 'Administrative action', 0x99: 'Payload format invalid', 0x9a: 'Retain not supported',
    0x9b: 'QoS not supported', 0x9c: 'Use another server', 0x9d: 'Server moved',
    0x9e: 'Shared Subscriptions not supported', 0x9f: 'Connection rate exceeded', 0xa0: 'Maximum connect time',
    0xa1: 'Subscription Identifiers not supported', 0xa2: 'Wildcard Subscriptions not supported',
  };

  // The proxy's answers on the auth topic (README.md), in words.
  const AUTH_REASONS = {
    invalid_session: 'the session is unknown, expired or revoked',
    session_expired: 'the session expired',
    session_revoked: 'the session was revoked (logout, password change or deleted user)',
    user_mismatch: 'a re-authentication named another user',
    auth_unavailable: 'the proxy could not reach the API server',
    upstream_unavailable: 'the proxy could not reach the broker',
    upstream_refused: 'the broker refused the proxy',
    will_not_allowed: 'the will topic is outside the ACL',
    timeout: 'the authentication came too late',
  };
  // Answers after which the session cannot work again: log in anew.
  const SESSION_ENDED = new Set(['invalid_session', 'session_expired', 'session_revoked', 'user_mismatch']);

  const MAX_MESSAGES = 200;
  const MAX_EVENTS = 100;
  const AUTH_ANSWER_TIMEOUT_MS = 15000;
  const RECONNECT_MAX_S = 30;

  const state = {
    phase: 'logged-out',    // logged-out | connecting | authenticating | online | reconnecting
    session: null,          // {token, user, groups, acl, expiresAt (ms)}
    client: null,
    closing: false,         // we are ending the connection ourselves
    attempt: 0,             // connection attempts since the last success
    reconnectTimer: null,
    refreshTimer: null,
    authTimer: null,
    subscriptions: new Map(),  // filter -> {qos, item}
    messages: 0,
  };

  // ------------------------------------------------------------ helpers

  const hex = (code) => '0x' + code.toString(16).padStart(2, '0');
  const reasonText = (code) => `${hex(code)} ${REASON_NAMES[code] || 'unknown reason code'}`;
  const clock = (date = new Date()) => date.toTimeString().slice(0, 8) + '.' + String(date.getMilliseconds()).padStart(3, '0');
  const apiUrl = () => $('api-url').value.trim().replace(/\/+$/, '');
  const mqttUrl = () => $('mqtt-url').value.trim();
  const version = () => Number($('mqtt-version').value);
  const authTopic = () => 'service/auth/' + state.session.token;
  // The session is a bearer secret: never shown in full.
  const redact = (text) => (state.session ? text.split(state.session.token).join(state.session.token.slice(0, 6) + '…') : text);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function prepend(list, item, max) {
    list.prepend(item);
    while (list.children.length > max) list.lastElementChild.remove();
  }

  function logEvent(kind, text) {
    const item = element('li', kind);
    item.append(element('time', '', clock()), element('span', '', redact(text)));
    prepend($('events'), item, MAX_EVENTS);
  }

  function setPhase(phase, detail) {
    state.phase = phase;
    const pill = $('status');
    pill.dataset.state = phase;
    pill.textContent = detail || phase.replace('-', ' ');
    const loggedIn = phase !== 'logged-out';
    $('login-card').hidden = loggedIn;
    $('session-card').hidden = !loggedIn;
    for (const id of ['subscribe', 'publish']) $(id).disabled = phase !== 'online';
  }

  // Whether an MQTT topic filter matches a topic name [MQTT-4.7].
  function matches(filter, topic) {
    const f = filter.split('/');
    const t = topic.split('/');
    if (topic.startsWith('$') && (f[0] === '#' || f[0] === '+')) return false;  // [MQTT-4.7.2-1]
    for (let i = 0; i < f.length; i++) {
      if (f[i] === '#') return true;
      if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
    }
    return f.length === t.length;
  }

  function fillList(list, filters) {
    list.replaceChildren(...(filters.length ? filters.map((f) => element('li', '', f)) : [element('li', 'none', 'nothing')]));
  }

  // ------------------------------------------------------------ the API server

  async function api(path, body, token) {
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    let response;
    try {
      response = await fetch(apiUrl() + path, { method: 'POST', headers, body: JSON.stringify(body || {}), cache: 'no-store' });
    } catch (e) {
      // The browser does not say why: a server that is down and a refused CORS
      // check look the same to a page.
      throw new Error(`cannot reach the API server at ${apiUrl()}: it is down, or it does not allow this page's ` +
                      `origin (${location.origin}; auth-server serve --cors-origin ${location.origin})`);
    }
    const text = await response.text();
    let answer = {};
    try { answer = text ? JSON.parse(text) : {}; } catch (e) { answer = { error: 'not JSON: ' + text.slice(0, 80) }; }
    if (!response.ok) {
      const error = new Error(apiError(response, answer));
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  function apiError(response, answer) {
    switch (answer.error) {
      case 'invalid_credentials': return 'wrong user name or password';
      case 'too_many_attempts': return `too many failed attempts: try again in ${response.headers.get('Retry-After') || 'a few'} s`;
      case 'invalid_session': return 'the session is no longer valid';
      case 'busy': return 'the API server is busy: try again in a moment';
      default: return `the API server answered ${response.status} ${answer.error || ''} ${answer.detail || ''}`.trim();
    }
  }

  async function login(event) {
    event.preventDefault();
    $('login-error').textContent = '';
    $('login').disabled = true;
    try {
      const user = $('username').value.trim();
      const answer = await api('/v1/login', { username: user, password: $('password').value });
      const validated = await api('/v1/sessions/validate', { session: answer.session });
      state.session = {
        token: answer.session,
        user: validated.user,
        groups: validated.groups || [],
        acl: { publish: validated.acl?.publish || [], subscribe: validated.acl?.subscribe || [] },
        expiresAt: Date.now() + 1000 * validated.expires_in,
      };
      $('password').value = '';
      logEvent('ok', `logged in as ${validated.user}; the session expires in ${Math.round(validated.expires_in / 60)} min`);
      showSession();
      for (const filter of state.session.acl.subscribe) addSubscription(filter, 1);
      state.attempt = 0;
      connect();
    } catch (e) {
      $('login-error').textContent = e.message;
      logEvent('error', 'login failed: ' + e.message);
    } finally {
      $('login').disabled = false;
    }
  }

  function showSession() {
    const s = state.session;
    $('session-user').textContent = s.user;
    $('session-groups').textContent = s.groups.length ? s.groups.join(', ') : 'none';
    $('session-proxy').textContent = `${mqttUrl()} (MQTT ${version() === 5 ? '5.0' : '3.1.1'})`;
    fillList($('acl-publish'), s.acl.publish);
    fillList($('acl-subscribe'), s.acl.subscribe);
    showExpiry();
    scheduleRefresh();
  }

  function showExpiry() {
    if (!state.session) return;
    const left = Math.max(0, Math.round((state.session.expiresAt - Date.now()) / 1000));
    $('session-expiry').textContent = left >= 120 ? `in ${Math.round(left / 60)} min` : `in ${left} s`;
  }

  // Refreshed at three quarters of its life: the API server first, then the
  // proxy, which learns the new expiry from the re-authentication.
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    const left = state.session.expiresAt - Date.now();
    state.refreshTimer = setTimeout(refresh, Math.max(1000, left * 0.75));
  }

  async function refresh() {
    if (!state.session) return;
    try {
      const answer = await api('/v1/sessions/refresh', null, state.session.token);
      state.session.expiresAt = Date.now() + 1000 * answer.expires_in;
      logEvent('info', 'session refreshed with the API server');
      if (state.phase === 'online') state.client.publish(authTopic(), '', { qos: 1 });
      scheduleRefresh();
    } catch (e) {
      if (e.status === 401) return sessionEnded('the session could not be refreshed: ' + e.message);
      logEvent('warn', 'refresh failed, retrying: ' + e.message);
      state.refreshTimer = setTimeout(refresh, 5000);
    }
  }

  async function logout() {
    const token = state.session?.token;
    sessionEnded('logged out');
    if (!token) return;
    try {
      await api('/v1/sessions/revoke', null, token);
    } catch (e) {
      logEvent('warn', 'logout: ' + e.message);
    }
  }

  function sessionEnded(why) {
    logEvent(why === 'logged out' ? 'info' : 'error', why === 'logged out' ? why : why + ': please log in again');
    clearTimeout(state.refreshTimer);
    clearTimeout(state.reconnectTimer);
    clearTimeout(state.authTimer);
    closeClient();
    state.session = null;
    state.subscriptions.clear();
    $('subscriptions').replaceChildren();
    setPhase('logged-out');
    if (why !== 'logged out') $('login-error').textContent = why + ': please log in again';
  }

  // ------------------------------------------------------------ the proxy

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (Date.now() >= state.session.expiresAt) return sessionEnded('the session expired');
    state.attempt += 1;
    setPhase('connecting', 'connecting…');
    logEvent('info', `connecting to ${mqttUrl()} (MQTT ${version() === 5 ? '5.0' : '3.1.1'})`);
    let client;
    try {
      client = mqtt.connect(mqttUrl(), {
        protocolVersion: version(),
        clientId: 'console-' + Math.random().toString(16).slice(2, 10),
        username: state.session.user,  // informational: the auth PUBLISH decides
        clean: true,
        keepalive: 30,
        connectTimeout: 10000,
        reconnectPeriod: 0,  // reconnecting is ours: it must re-authenticate first
        resubscribe: false,
      });
    } catch (e) {
      logEvent('error', 'cannot connect: ' + e.message);
      return scheduleReconnect();
    }
    state.client = client;
    state.closing = false;
    let opened = false;
    client.on('connect', () => {
      opened = true;
      authenticate(client);
    });
    client.on('message', (topic, payload, packet) => {
      if (client !== state.client) return;
      if (state.session && topic === authTopic()) return authAnswer(payload);
      showMessage(topic, payload, packet);
    });
    client.on('disconnect', (packet) => {
      const code = packet.reasonCode || 0;
      // Why is on the auth topic, just before (a reconnect asks again if not).
      logEvent(code ? 'error' : 'info', `the proxy sent DISCONNECT ${reasonText(code)}`);
    });
    client.on('error', (e) => logEvent('error', 'MQTT error: ' + e.message));
    client.on('close', () => {
      if (client !== state.client) return;
      state.client = null;
      clearTimeout(state.authTimer);
      if (state.closing || !state.session) return;
      logEvent('error', opened ? 'the connection to the proxy closed'
        : `could not connect to ${mqttUrl()}: the proxy is down, the URL is wrong, or its allowed_origins ` +
          `does not list this page's origin (${location.origin})`);
      scheduleReconnect();
    });
  }

  function authenticate(client) {
    setPhase('authenticating', 'authenticating…');
    logEvent('info', 'CONNACK from the proxy; sending the session to ' + authTopic());
    client.publish(authTopic(), '', { qos: 1 });
    clearTimeout(state.authTimer);
    state.authTimer = setTimeout(() => {
      logEvent('error', 'no answer on the auth topic: reconnecting');
      closeClient();
      scheduleReconnect();
    }, AUTH_ANSWER_TIMEOUT_MS);
  }

  function authAnswer(payload) {
    let answer;
    try { answer = JSON.parse(new TextDecoder().decode(payload)); } catch (e) { answer = { result: 'unreadable' }; }
    clearTimeout(state.authTimer);
    if (answer.result === 'ok') {
      if (state.phase === 'online') return logEvent('ok', 'the proxy accepted the refreshed session');
      state.attempt = 0;
      setPhase('online', `online as ${answer.user}`);
      logEvent('ok', `the proxy accepted the session: ${JSON.stringify(answer)}`);
      subscribeAll();
      return;
    }
    const why = AUTH_REASONS[answer.reason] || 'no reason given';
    logEvent('error', `the proxy refused the session: ${JSON.stringify(answer)} (${why})`);
    if (answer.reason === 'session_expired' && state.session.expiresAt - Date.now() > 5000) {
      // Refreshed, but the proxy judged by a validation it cached before the
      // refresh (at most its max-age, so never past the old expiry): reconnect.
      return logEvent('warn', 'the session was refreshed since: reconnecting');
    }
    if (SESSION_ENDED.has(answer.reason)) return sessionEnded(`the proxy refused the session: ${answer.reason} (${why})`);
    // The proxy closes the connection after a denial; the close handler retries.
  }

  function closeClient() {
    if (!state.client) return;
    state.closing = true;
    const client = state.client;
    state.client = null;
    client.end(true);
  }

  function scheduleReconnect() {
    const delay = Math.min(RECONNECT_MAX_S, 2 ** Math.min(Math.max(state.attempt, 1) - 1, 5));  // 1, 2, 4 ... 30 s
    let left = delay;
    setPhase('reconnecting', `reconnecting in ${left} s`);
    const tick = () => {
      if (state.phase !== 'reconnecting' || !state.session) return;
      left -= 1;
      if (left <= 0) return connect();
      $('status').textContent = `reconnecting in ${left} s`;
      state.reconnectTimer = setTimeout(tick, 1000);
    };
    state.reconnectTimer = setTimeout(tick, 1000);
  }

  // ------------------------------------------------------------ subscriptions

  function addSubscription(filter, qos) {
    if (state.subscriptions.has(filter)) return state.subscriptions.get(filter);
    const item = element('li', '');
    item.dataset.filter = filter;
    const remove = element('button', 'remove', '×');
    remove.type = 'button';
    remove.title = 'unsubscribe';
    remove.addEventListener('click', () => unsubscribe(filter));
    item.append(element('code', '', filter), element('span', 'verdict', ''), remove);
    $('subscriptions').append(item);
    const entry = { qos, item };
    state.subscriptions.set(filter, entry);
    setVerdict(entry, 'pending', 'pending');
    return entry;
  }

  function setVerdict(entry, verdict, text) {
    entry.item.dataset.state = verdict;
    entry.item.querySelector('.verdict').textContent = text;
  }

  function subscribeAll() {
    const filters = [...state.subscriptions.keys()];
    if (filters.length) subscribe(filters);
  }

  // One SUBSCRIBE for the filters; the SUBACK's reason code for each filter is
  // shown beside it [MQTT-3.9.3].
  function subscribe(filters) {
    const request = {};
    for (const f of filters) {
      request[f] = { qos: state.subscriptions.get(f).qos };
      setVerdict(state.subscriptions.get(f), 'pending', 'pending');
    }
    state.client.subscribe(request, (err, granted, packet) => {
      const codes = packet?.granted;
      if (!codes) return logEvent('error', 'subscribe failed: ' + (err ? err.message : 'no SUBACK'));
      filters.forEach((filter, i) => {
        const entry = state.subscriptions.get(filter);
        if (!entry) return;
        const code = codes[i];
        if (code < 0x80) {
          setVerdict(entry, 'granted', `granted QoS ${code}`);
          logEvent('ok', `SUBACK ${filter}: ${version() === 5 ? reasonText(code) : 'granted QoS ' + code}`);
        } else {
          const name = version() === 5 ? reasonText(code) : `${hex(code)} Failure`;
          setVerdict(entry, 'denied', `denied: ${name}: outside your subscribe ACL`);
          logEvent('error', `SUBACK ${filter}: denied, ${name}`);
        }
      });
    });
  }

  function unsubscribe(filter) {
    const entry = state.subscriptions.get(filter);
    if (!entry) return;
    state.subscriptions.delete(filter);
    entry.item.remove();
    if (state.phase === 'online' && entry.item.dataset.state === 'granted') {
      state.client.unsubscribe(filter, () => logEvent('info', 'unsubscribed from ' + filter));
    }
  }

  function onSubscribe(event) {
    event.preventDefault();
    const filter = $('sub-filter').value.trim();
    if (!filter || state.phase !== 'online') return;
    const entry = addSubscription(filter, Number($('sub-qos').value));
    entry.qos = Number($('sub-qos').value);
    subscribe([filter]);
    $('sub-filter').value = '';
  }

  // ------------------------------------------------------------ publish

  function onPublish(event) {
    event.preventDefault();
    if (state.phase !== 'online') return;
    const topic = $('pub-topic').value.trim();
    const payload = $('pub-payload').value;
    const qos = Number($('pub-qos').value);
    const retain = $('pub-retain').checked;
    const item = element('li', '');
    item.dataset.topic = topic;
    item.append(element('code', '', topic), element('span', 'verdict', `QoS ${qos}: sending`));
    prepend($('publications'), item, 6);
    const allowed = state.session.acl.publish.some((f) => matches(f, topic));
    state.client.publish(topic, payload, { qos, retain }, (err, packet) => {
      const verdict = item.querySelector('.verdict');
      if (err && err.code !== undefined) {
        // 5.0: the proxy's PUBACK / PUBREC reason code for a refused publish.
        item.dataset.state = 'denied';
        verdict.textContent = `refused: ${reasonText(err.code)}` +
          (allowed ? '' : `: outside your publish ACL (${state.session.acl.publish.join(', ') || 'nothing'})`);
        logEvent('error', `PUBLISH ${topic} refused by the proxy: ${reasonText(err.code)}`);
      } else if (err) {
        item.dataset.state = 'denied';
        verdict.textContent = 'failed: ' + err.message;
        logEvent('error', `PUBLISH ${topic} failed: ${err.message}`);
      } else if (qos === 0) {
        item.dataset.state = 'sent';
        verdict.textContent = 'QoS 0: sent (no acknowledgement; the proxy drops what the ACL does not allow)' +
          (allowed ? '' : ': outside your publish ACL');
      } else if (version() !== 5) {
        item.dataset.state = allowed ? 'granted' : 'sent';
        verdict.textContent = `QoS ${qos}: acknowledged` +
          (allowed ? '' : ' (3.1.1 acknowledges refused publishes too: outside your publish ACL)');
      } else {
        item.dataset.state = 'granted';
        verdict.textContent = `QoS ${qos}: acknowledged, ${reasonText(packet?.reasonCode || 0)}`;
        logEvent('ok', `PUBLISH ${topic}: acknowledged`);
      }
    });
  }

  // ------------------------------------------------------------ messages

  function showMessage(topic, payload, packet) {
    const row = element('tr', '');
    let text = new TextDecoder('utf-8', { fatal: false }).decode(payload);
    if (text.length > 500) text = text.slice(0, 500) + '…';
    const qos = element('td', 'qos', String(packet.qos));
    if (packet.retain) qos.append(element('span', 'tag', 'retained'));
    row.append(element('td', 'time', clock()), element('td', 'topic', topic), qos, element('td', 'payload', text));
    prepend($('messages').tBodies[0], row, MAX_MESSAGES);
    state.messages += 1;
    $('message-count').textContent = String(state.messages);
    $('no-messages').hidden = true;
  }

  // ------------------------------------------------------------ start

  function start() {
    const params = new URLSearchParams(location.search);
    const web = location.protocol === 'http:' || location.protocol === 'https:';
    $('api-url').value = params.get('api') || (web ? location.origin : 'http://127.0.0.1:8080');
    $('mqtt-url').value = params.get('mqtt') ||
      `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname || '127.0.0.1'}:8081/mqtt`;
    if (params.get('user')) $('username').value = params.get('user');
    if (params.get('mqtt_version') === '3.1.1' || params.get('mqtt_version') === '4') $('mqtt-version').value = '4';
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('subscribe-form').addEventListener('submit', onSubscribe);
    $('publish-form').addEventListener('submit', onPublish);
    setInterval(showExpiry, 1000);
    setPhase('logged-out');
    if (typeof mqtt === 'undefined') {
      $('login').disabled = true;
      $('login-error').textContent = 'MQTT.js did not load (vendor/mqtt.min.js): run `npm ci` in auth/console';
    }
  }

  start();
})();
