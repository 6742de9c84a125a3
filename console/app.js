// AEF operator console: plain ES module, no build step. It talks to Supabase Auth and Realtime
// through supabase-js (vendor/supabase.js, the npm package's UMD bundle) and to the AEF API
// with the session's access token. config.json says where both are, so the same files work
// against `aef dev` and a deployed project.

const $ = (selector, root = document) => root.querySelector(selector)
const POLL_MS = 2000
const RESUBSCRIBE_MS = 15000 // while live updates are lost: a fresh subscription this often

let config = null
let supabase = null
let session = null
let teardown = () => {} // the current page's cleanup (channels, timers)

// ----------------------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value)
    else if (key === 'text') el.textContent = value
    else if (value === true) el.setAttribute(key, '')
    else el.setAttribute(key, value)
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return el
}

function show(...nodes) {
  const main = $('#main')
  main.replaceChildren(...nodes.filter(Boolean))
  const heading = $('h1', main)
  document.title = heading ? `${heading.textContent} · AEF console` : 'AEF console'
}

function fill(el, ...nodes) {
  el.replaceChildren(...nodes.filter(Boolean)) // replaceChildren would print null as "null"
}

function toast(text) {
  const box = $('#toast')
  box.textContent = text
  box.hidden = false
  clearTimeout(toast.timer)
  toast.timer = setTimeout(() => { box.hidden = true }, 5000)
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—'
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—'
  const s = Math.round(seconds)
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`
}

const STATUS_WORDS = {
  idle: 'Not started', queued: 'Queued', starting: 'Starting', running: 'Running',
  paused: 'Paused', waiting_checkpoint: 'Waiting for you', waiting_recovery: 'Needs help',
  cancelling: 'Stopping', completed: 'Completed', failed: 'Failed', cancelled: 'Stopped',
}
const TERMINAL = new Set(['completed', 'failed', 'cancelled'])

function statusBadge(status) {
  return h('span', { class: `badge status-${status}`, 'data-status': status },
    STATUS_WORDS[status] || status)
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`)
    this.status = status
    this.problem = problem
  }
}

async function api(method, path, { body, headers = {}, raw = false } = {}) {
  const { data } = await supabase.auth.getSession()
  const token = data.session?.access_token
  const response = await fetch(`${config.apiBase}${path}`, {
    method,
    cache: 'no-store',
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  if (raw) return response
  if (!response.ok) {
    let problem = null
    try { problem = await response.json() } catch { /* not JSON */ }
    throw new ApiError(response.status, problem)
  }
  return response.status === 204 ? null : response.json()
}

function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error.message || String(error))
}

// ----------------------------------------------------------------------------- plan tree

function walk(steps, visit) {
  for (const step of steps || []) {
    visit(step)
    walk(step.children, visit)
    if (step.decision) { walk(step.decision.yes, visit); walk(step.decision.no, visit) }
  }
}

function planTree(plan, inputs) {
  const needs = {}
  for (const input of inputs || []) {
    for (const stepId of input.requiredBy || []) (needs[stepId] ||= []).push(input)
  }
  const branch = (steps, level) => h('ul', { class: level === 0 ? 'tree root' : 'tree' },
    steps.map((step) => item(step, level)))
  const item = (step, level) => {
    const marks = []
    if (step.checkpoint) {
      marks.push(h('span', { class: 'mark checkpoint', title: step.checkpoint.description || '' },
        `Checkpoint: ${step.checkpoint.title}`))
    }
    for (const input of needs[step.id] || []) {
      marks.push(h('span', { class: `mark input ${input.kind}` },
        `${input.kind === 'credential' ? 'Credential' : 'Input'}: ${input.name}`))
    }
    if (step.method === 'manual' || step.kind === 'manual') {
      marks.push(h('span', { class: 'mark manual' }, 'By hand'))
    }
    const label = h('span', { class: 'label' }, step.label)
    const nested = []
    if (step.children?.length) nested.push(branch(step.children, level + 1))
    if (step.decision) {
      nested.push(h('p', { class: 'branch' }, `If “${step.decision.question}”:`))
      if (step.decision.yes?.length) nested.push(h('p', { class: 'branch' }, 'Yes →'), branch(step.decision.yes, level + 1))
      if (step.decision.no?.length) nested.push(h('p', { class: 'branch' }, 'No →'), branch(step.decision.no, level + 1))
    }
    return h('li', { 'data-step': step.id }, h('div', { class: 'step' }, label, ...marks), ...nested)
  }
  return branch(plan || [], 0)
}

// ----------------------------------------------------------------------------- sign-in

function signInPage(message) {
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Use your account for this AEF deployment.'),
    h('label', { for: 'email' }, 'Email'),
    h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'username', required: true }),
    h('label', { for: 'password' }, 'Password'),
    h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    h('div', { id: 'sign-in-error' }, message ? errorBox(new Error(message)) : null),
    h('button', { type: 'submit' }, 'Sign in'))
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const { error } = await supabase.auth.signInWithPassword({
      email: form.email.value.trim(), password: form.password.value,
    })
    if (error) {
      $('#sign-in-error').replaceChildren(errorBox(error))
      form.password.focus()
    }
  })
  show(form)
  form.email.focus()
}

// ----------------------------------------------------------------------------- documents

async function documentsPage() {
  const status = h('div', { 'aria-live': 'polite' })
  const file = h('input', { id: 'upload-file', type: 'file', accept: '.json,application/json' })
  const upload = h('form', { class: 'card' },
    h('h2', {}, 'Add a workflow'),
    h('p', { class: 'muted' }, 'Choose an SOP or workflow JSON file. AEF turns it into a plan you can run.'),
    h('label', { for: 'upload-file' }, 'SOP or workflow file (JSON)'), file,
    h('button', { type: 'submit' }, 'Upload and transform'), status)
  upload.addEventListener('submit', async (event) => {
    event.preventDefault()
    if (!file.files[0]) { status.replaceChildren(errorBox(new Error('Choose a file first.'))); return }
    status.replaceChildren(h('p', {}, 'Transforming…'))
    try {
      const sop = JSON.parse(await file.files[0].text())
      const made = await api('POST', '/api/aef/transform', { body: { sop } })
      // the transform made an idle execution: the first start runs that one
      location.hash = `#/documents/${made.aefDocumentId}?execution=${made.executionId}`
    } catch (error) {
      status.replaceChildren(errorBox(error instanceof SyntaxError
        ? new Error(`That file is not JSON: ${error.message}`) : error))
    }
  })
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'))
  show(h('h1', {}, 'Documents'), upload, h('section', { class: 'card' }, h('h2', {}, 'Your documents'), list))
  try {
    const { documents } = await api('GET', '/api/aef/documents?limit=50')
    list.replaceChildren(documents.length
      ? h('ul', { class: 'rows', id: 'document-list' }, documents.map((d) => h('li', {},
        h('a', { href: `#/documents/${d.id}` }, d.title), h('span', { class: 'muted' }, ` added ${when(d.createdAt)}`))))
      : h('p', { class: 'muted', id: 'no-documents' }, 'No documents yet. Upload one above.'))
  } catch (error) { list.replaceChildren(errorBox(error)) }
}

async function documentPage(documentId, params) {
  let idle = params.get('execution') // the transform's execution, started by the first click
  show(h('p', { class: 'muted' }, 'Loading…'))
  let doc
  try { doc = await api('GET', `/api/aef/documents/${documentId}`) } catch (error) {
    show(h('h1', {}, 'Document'), errorBox(error)); return
  }
  const aef = doc.aefDocument.aef
  const inputs = aef.inputs || []
  const fields = inputs.map((input) => {
    const id = `input-${input.name}`
    const secret = input.kind === 'credential'
    return h('div', { class: 'field' },
      h('label', { for: id }, input.name, secret ? ' (secret)' : ''),
      h('input', { id, name: input.name, 'data-kind': input.kind, type: secret ? 'password' : 'text',
        autocomplete: secret ? 'off' : null, required: true,
        value: secret ? null : (input.name === 'base_url' && !input.example ? config.apiBase : input.example),
        'aria-describedby': input.description ? `${id}-help` : null }),
      input.description ? h('p', { class: 'help', id: `${id}-help` }, input.description) : null)
  })
  const problems = h('div', {})
  const form = h('form', { class: 'card', id: 'start-form' },
    h('h2', {}, 'Start a run'),
    fields.length ? h('fieldset', {}, h('legend', {}, 'Inputs'), fields)
      : h('p', { class: 'muted' }, 'This plan needs no inputs.'),
    h('fieldset', { class: 'steps' }, h('legend', {}, 'Steps to run (all by default)'),
      (aef.plan || []).map((step) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'step', value: step.id, checked: true }), ' ', step.label))),
    problems,
    h('button', { type: 'submit' }, 'Start execution'))
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const variables = {}
    const secrets = {}
    const missing = []
    for (const field of form.querySelectorAll('input[data-kind]')) {
      if (!field.value) missing.push(field.name)
      ;(field.dataset.kind === 'credential' ? secrets : variables)[field.name] = field.value
    }
    if (missing.length) { problems.replaceChildren(errorBox(new Error(`Fill in: ${missing.join(', ')}`))); return }
    const boxes = [...form.querySelectorAll('input[name=step]')]
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value)
    if (!chosen.length) { problems.replaceChildren(errorBox(new Error('Choose at least one step.'))); return }
    const body = { aefDocumentId: documentId, variables, secrets }
    if (chosen.length < boxes.length) body.stepIds = chosen
    if (idle) body.executionId = idle
    try {
      // a new key per click: a double-submitted request is answered once, a new click runs again
      const started = await api('POST', '/api/aef/execute', { body, headers: { 'Idempotency-Key': crypto.randomUUID() } })
      idle = null
      location.hash = `#/executions/${started.executionId}?document=${documentId}`
    } catch (error) { problems.replaceChildren(errorBox(error)) }
  })
  const checkpoints = aef.config?.checkpoints || []
  show(h('h1', {}, doc.title),
    h('p', { class: 'muted' }, `Added ${when(doc.createdAt)} · ${checkpoints.length} checkpoint(s) · ${inputs.length} input(s)`),
    h('div', { class: 'legend' }, h('span', { class: 'mark checkpoint' }, 'Checkpoint'), ' asks you before the step runs · ',
      h('span', { class: 'mark input variable' }, 'Input'), ' / ', h('span', { class: 'mark input credential' }, 'Credential'),
      ' is a value you give when you start'),
    h('section', { class: 'card', 'aria-labelledby': 'plan-heading' }, h('h2', { id: 'plan-heading' }, 'Plan'), planTree(aef.plan, inputs)),
    form)
}

// ----------------------------------------------------------------------------- live execution

async function findDocumentId(executionId) {
  let after = null
  for (let page = 0; page < 10; page++) {
    const query = after ? `?limit=100&after=${after}` : '?limit=100'
    const { executions, nextCursor } = await api('GET', `/api/aef/executions${query}`)
    const found = executions.find((e) => e.id === executionId)
    if (found) return found.documentId
    if (!nextCursor) return null
    after = nextCursor
  }
  return null
}

async function executionPage(executionId, params) {
  show(h('p', { class: 'muted' }, 'Loading…'))
  let first
  try { first = await api('GET', `/api/aef/live/${executionId}?after=0`) } catch (error) {
    show(h('h1', {}, 'Execution'), errorBox(error)); return
  }
  const documentId = params.get('document') || await findDocumentId(executionId).catch(() => null)
  const doc = documentId ? await api('GET', `/api/aef/documents/${documentId}`).catch(() => null) : null
  const plan = doc?.aefDocument?.aef?.plan || []
  const labels = {}
  walk(plan, (step) => { labels[step.id] = step.label })

  const el = {
    status: h('span', { id: 'exec-status' }),
    progress: h('progress', { id: 'exec-progress', max: 100, value: 0, 'aria-label': 'Progress' }),
    progressText: h('span', { class: 'muted' }),
    current: h('p', { id: 'current-step' }),
    connection: h('p', { id: 'connection', role: 'status', class: 'connection' }, 'Connecting…'),
    shot: h('img', { id: 'screenshot', alt: '', width: 1280, height: 800, hidden: true }),
    noShot: h('p', { class: 'no-shot' }, 'No screenshot yet: the first one arrives when the browser has a page.'),
    shotCaption: h('figcaption', { class: 'muted' }, 'The browser, as the runner last saw it'),
    url: h('span', { id: 'browser-url', class: 'mono' }),
    checkpoint: h('section', { id: 'checkpoint-panel', class: 'card attention', 'aria-labelledby': 'cp-h', hidden: true }),
    recovery: h('section', { id: 'recovery-panel', class: 'card danger', 'aria-labelledby': 'rec-h', hidden: true }),
    takeover: h('section', { id: 'takeover-panel', class: 'card', 'aria-labelledby': 'to-h', hidden: true }),
    logs: h('ol', { id: 'log-stream', class: 'logs', tabindex: 0, 'aria-label': 'Log lines, oldest first' }),
    stop: h('button', { type: 'button', id: 'stop', class: 'danger' }, 'Stop execution'),
    tree: planTree(plan, []),
  }
  const figure = h('figure', { class: 'shot' }, el.shot, el.noShot, el.shotCaption)
  show(
    h('h1', {}, doc ? doc.title : 'Execution'),
    h('div', { class: 'exec-head' }, el.status, el.progress, el.progressText, el.stop,
      h('a', { href: `#/executions/${executionId}/logs` }, 'All logs')),
    el.connection,
    h('div', { class: 'exec-grid' },
      h('section', { class: 'card plan', 'aria-labelledby': 'plan-h' }, h('h2', { id: 'plan-h' }, 'Plan'), el.current,
        h('div', { class: 'plan-steps', tabindex: 0, role: 'region', 'aria-label': 'Plan steps' }, el.tree)),
      h('div', { class: 'live' }, el.checkpoint, el.recovery, el.takeover, figure,
        h('p', {}, 'Page: ', el.url),
        h('section', { class: 'card', 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Log'), el.logs))))

  const state = { lastSeq: -1, etag: null, logIds: new Set(), shots: new Set(), status: null,
    mode: 'connecting', polling: null, countdown: null, takingOver: false, seen: [],
    subscribed: false, channelSince: 0, resubscribing: false, closed: false, pollRound: 0 }
  const stopped = () => TERMINAL.has(state.status)

  el.stop.addEventListener('click', async () => {
    if (!confirm('Stop this execution? The browser is closed and the run ends.')) return
    el.stop.disabled = true
    try { await api('DELETE', `/api/aef/stop/${executionId}`); toast('Stopped.') } catch (error) { toast(error.message) }
  })

  function setConnection(mode, detail = '') {
    state.mode = mode
    el.connection.dataset.mode = mode
    el.connection.textContent = {
      connecting: 'Connecting to live updates…',
      realtime: 'Live: updates arrive as they happen.',
      polling: `Live updates are unavailable; checking every ${POLL_MS / 1000} s instead. ${detail}`,
      done: 'The run has ended.',
    }[mode]
  }

  function addLogs(entries) {
    for (const entry of entries || []) {
      if (state.logIds.has(entry.id)) continue
      state.logIds.add(entry.id)
      el.logs.append(h('li', { class: `log level-${entry.level}`, 'data-id': entry.id },
        h('time', { datetime: entry.timestamp }, new Date(entry.timestamp).toLocaleTimeString()), ' ',
        h('span', { class: 'level' }, entry.level), ' ', entry.message))
    }
    el.logs.scrollTop = el.logs.scrollHeight
  }

  function answerButtons(cp) {
    const choices = cp.choices?.length ? cp.choices : [
      { response: 'approve', label: cp.type === 'decision' ? 'Yes' : 'Approve', meaning: cp.type === 'decision' ? 'Take the yes branch' : 'Run the step' },
      { response: 'skip', label: 'Skip', meaning: 'Skip this step and go on' },
      { response: 'reject', label: cp.type === 'decision' ? 'No' : 'Reject', meaning: cp.type === 'decision' ? 'Take the no branch' : 'Stop the whole execution' },
    ]
    return h('div', { class: 'choices' }, choices.map((choice) => {
      const id = `choice-${choice.response}-meaning`
      return h('div', { class: 'choice' },
        h('button', { type: 'button', class: choice.response === 'approve' ? '' : 'secondary', 'data-response': choice.response,
          'aria-describedby': id, onclick: async (event) => {
            event.currentTarget.disabled = true
            try {
              await api('POST', `/api/aef/checkpoint/${cp.id}`, { body: { response: choice.response } })
              el.checkpoint.hidden = true
              toast(`Answered: ${choice.label}`)
            } catch (error) { toast(error.message); event.currentTarget.disabled = false }
          } }, choice.label),
        h('span', { id, class: 'muted' }, choice.meaning))
    }))
  }

  function renderCheckpoint(message) {
    const pending = (message.checkpoints || []).find((c) => c.status === 'pending' && c.type !== 'error')
    if (!pending) { el.checkpoint.hidden = true; el.checkpoint.dataset.id = ''; return }
    if (el.checkpoint.dataset.id === pending.id && !el.checkpoint.hidden) return
    el.checkpoint.dataset.id = pending.id
    const preview = pending.preview
    fill(el.checkpoint,
      h('h2', { id: 'cp-h' }, `Your answer is needed: ${pending.title}`),
      pending.description ? h('p', {}, pending.description) : null,
      preview?.actions?.length ? h('table', { class: 'preview' },
        h('caption', {}, 'What the step will do'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Action'), h('th', { scope: 'col' }, 'On'), h('th', { scope: 'col' }, 'Value'))),
        h('tbody', {}, preview.actions.map((a) => h('tr', {}, h('td', {}, a.description || a.kind),
          h('td', {}, a.target ? (a.target.name || a.target.selector || '') : ''), h('td', { class: 'mono' }, a.value ?? ''))))) : null,
      preview?.screenshot ? h('img', { class: 'preview-shot', src: preview.screenshot, alt: 'The page with what the step will touch outlined' }) : null,
      answerButtons(pending),
      pending.expiresAt ? h('p', { class: 'muted' }, `If nobody answers by ${when(pending.expiresAt)}: ${pending.defaultAction}.`) : null)
    el.checkpoint.hidden = false
    $('button', el.checkpoint)?.focus()
  }

  function renderRecovery(message) {
    clearInterval(state.countdown)
    const error = message.error
    if (!error || stopped() || message.execution.status !== 'waiting_recovery') { el.recovery.hidden = true; return }
    const timer = h('p', { id: 'auto-retry', 'aria-live': 'off' })
    if (error.auto_retry_in) {
      const until = Date.now() + error.auto_retry_in * 1000
      const tick = () => {
        const left = Math.max(0, Math.round((until - Date.now()) / 1000))
        timer.textContent = left ? `Retrying automatically in ${left} s unless you choose.` : 'Retrying…'
      }
      tick()
      state.countdown = setInterval(tick, 1000)
    }
    const run = async (action) => {
      try {
        if (action === 'stop') { await api('DELETE', `/api/aef/stop/${executionId}`) } else {
          await api('POST', `/api/aef/action/${executionId}`, { body: { action: action === 'manual_takeover' ? 'takeover' : action } })
        }
        if (action === 'manual_takeover') startTakeover()
        el.recovery.hidden = true
      } catch (err) { toast(err.message) }
    }
    el.recovery.replaceChildren(h('h2', { id: 'rec-h' }, 'The run needs help'),
      h('p', {}, error.message), timer,
      h('div', { class: 'choices' }, (error.recovery_options || []).map((option) => h('div', { class: 'choice' },
        h('button', { type: 'button', class: option.action === 'stop' ? 'danger' : '', 'data-action': option.action,
          onclick: () => run(option.action) }, option.label),
        option.description ? h('span', { class: 'muted' }, option.description) : null))))
    el.recovery.hidden = false
  }

  function apply(message) {
    if (message.seq <= state.lastSeq) return false
    state.lastSeq = message.seq
    state.seen.push(message.seq)
    const ex = message.execution
    state.status = ex.status
    el.status.replaceChildren(statusBadge(ex.status))
    el.progress.value = ex.progress || 0
    el.progressText.textContent = `${ex.progress || 0}%`
    for (const li of el.tree.querySelectorAll('[aria-current]')) li.removeAttribute('aria-current')
    if (ex.currentStep) {
      const li = el.tree.querySelector(`[data-step="${CSS.escape(ex.currentStep)}"]`)
      li?.setAttribute('aria-current', 'step')
      const box = li?.closest('.plan-steps')
      if (li && box) { // keep the current step in view inside the plan's own scroll area
        const item = li.getBoundingClientRect()
        const area = box.getBoundingClientRect()
        if (item.top < area.top || item.top > area.bottom - 40) box.scrollTop += item.top - area.top - area.height / 3
      }
      el.current.textContent = `Now: ${labels[ex.currentStep] || ex.currentStep}`
    }
    const browser = message.browser || {}
    if (browser.screenshot && browser.screenshot !== el.shot.getAttribute('src')) {
      el.shot.src = browser.screenshot
      el.shot.hidden = false
      el.noShot.hidden = true
      el.shot.alt = `The browser at ${browser.currentUrl || 'its current page'}${browser.lastAction ? `, after: ${browser.lastAction}` : ''}`
      state.shots.add(browser.screenshot.split('?')[0])
      el.shot.dataset.count = String(state.shots.size)
    }
    el.url.textContent = browser.currentUrl || '—'
    addLogs(message.logs)
    renderCheckpoint(message)
    renderRecovery(message)
    el.takeover.hidden = !state.takingOver || stopped()
    el.stop.hidden = stopped()
    if (stopped()) {
      el.current.textContent = `Finished: ${STATUS_WORDS[ex.status]}`
      finish()
    }
    return true
  }

  // -- takeover: the person drives the runner's browser through the API
  async function sendInput(input) {
    try {
      await api('POST', `/api/aef/action/${executionId}`, { body: { action: 'takeover', input } })
      el.takeover.querySelector('.takeover-result').textContent = `Sent: ${input.kind}`
    } catch (error) { toast(error.message) }
  }
  el.shot.addEventListener('click', (event) => {
    if (!state.takingOver) return
    const box = el.shot.getBoundingClientRect()
    // the screenshot is the page's viewport at 1:1: scale the click back to its pixels
    const x = ((event.clientX - box.left) / box.width) * (el.shot.naturalWidth || 1280)
    const y = ((event.clientY - box.top) / box.height) * (el.shot.naturalHeight || 800)
    sendInput({ kind: 'click_at', x: Math.round(x), y: Math.round(y) })
  })
  function startTakeover() {
    state.takingOver = true
    const text = h('input', { id: 'to-text', type: 'text', autocomplete: 'off' })
    const key = h('input', { id: 'to-key', type: 'text', value: 'Enter' })
    const url = h('input', { id: 'to-url', type: 'url' })
    const form = (label, id, field, kind, make) => {
      const f = h('form', { class: 'inline' }, h('label', { for: id }, label), field, h('button', { type: 'submit', class: 'secondary' }, kind))
      f.addEventListener('submit', (event) => { event.preventDefault(); if (field.value) sendInput(make(field.value)) })
      return f
    }
    el.takeover.replaceChildren(h('h2', { id: 'to-h' }, 'You are driving the browser'),
      h('p', {}, 'Click on the screenshot to click there in the real browser. A fresh screenshot follows each input.'),
      form('Type text', 'to-text', text, 'Type', (v) => ({ kind: 'type', text: v })),
      form('Press a key', 'to-key', key, 'Press', (v) => ({ kind: 'press', key: v })),
      form('Go to URL', 'to-url', url, 'Go', (v) => ({ kind: 'navigate', url: v })),
      h('p', { class: 'takeover-result muted', 'aria-live': 'polite' }),
      h('button', { type: 'button', id: 'release', onclick: async () => {
        try {
          await api('POST', `/api/aef/action/${executionId}`, { body: { action: 'release' } })
          state.takingOver = false
          el.takeover.hidden = true
          figure.classList.remove('driving')
          el.shotCaption.textContent = 'The browser, as the runner last saw it'
          toast('Released: the run continues.')
        } catch (error) { toast(error.message) }
      } }, 'Release the browser'))
    el.takeover.hidden = false
    figure.classList.add('driving')
    el.shotCaption.textContent = 'Click anywhere on this screenshot to click there in the browser'
    text.focus()
  }

  // -- live updates: Realtime first; polling with If-None-Match while it is unavailable
  async function catchUp() {
    const response = await api('GET', `/api/aef/live/${executionId}?after=${Math.max(0, state.lastSeq)}`,
      { raw: true, headers: state.etag ? { 'If-None-Match': state.etag } : {} })
    if (response.status === 304) return 304
    if (!response.ok) throw new ApiError(response.status, null)
    state.etag = response.headers.get('ETag')
    const body = await response.json()
    for (const event of body.events) apply(event)
    if (state.lastSeq < 0) apply(body.message)
    return 200
  }
  // One polling loop at a time: stopPolling ends its round, so a check still on its way when
  // Realtime comes back neither says "polling" again nor schedules another.
  function startPolling(reason) {
    if (state.polling || stopped()) return
    const round = ++state.pollRound
    const current = () => state.pollRound === round && !stopped()
    setConnection('polling', reason)
    const loop = async () => {
      if (!current()) return
      let detail
      try {
        const code = await catchUp()
        el.connection.dataset.last = String(code)
        detail = code === 304 ? 'Last check: no change.' : 'Last check: new events.'
      } catch (error) { detail = `Last check failed: ${error.message}` }
      if (!current()) return
      setConnection('polling', detail)
      resubscribe()
      state.polling = setTimeout(loop, POLL_MS)
    }
    state.polling = setTimeout(loop, 0)
  }
  function stopPolling() { state.pollRound++; clearTimeout(state.polling); state.polling = null }

  let channel = null
  let resubscribe = () => {}
  function finish() {
    stopPolling()
    clearInterval(state.countdown)
    state.closed = true
    if (channel) { supabase.removeChannel(channel); channel = null }
    setConnection('done')
  }
  for (const event of first.events) apply(event)
  if (state.lastSeq < first.message.seq) apply(first.message)

  // Subscribe to the execution's private channel. While it is not joined, the polling loop
  // calls this again every RESUBSCRIBE_MS: a new channel on a new socket instead of waiting
  // out the client's reconnect backoff, a rejoin that stalled, or a socket stuck opening
  // (the client does not open another while one is connecting or closing).
  async function subscribe() {
    const previous = channel
    channel = null
    state.subscribed = false
    state.channelSince = Date.now()
    if (previous) {
      await supabase.removeChannel(previous)
      if (supabase.getChannels().includes(previous)) { channel = previous; return } // next round
      if (supabase.getChannels().length === 0) await supabase.realtime.disconnect()
    }
    if (stopped() || state.closed) return
    const { data } = await supabase.auth.getSession()
    await supabase.realtime.setAuth(data.session?.access_token)
    if (stopped() || state.closed) return // ended or left while this was on its way
    const current = supabase.channel(`execution:${executionId}`, { config: { private: true } })
    channel = current
    current.on('broadcast', { event: '*' }, ({ payload }) => {
      if (payload.seq > state.lastSeq + 1) catchUp().catch(() => {}) // a gap: fetch what is missing
      else apply(payload)
    })
    current.subscribe((status) => {
      if (channel !== current) return // replaced by a newer subscription
      if (status === 'SUBSCRIBED') {
        state.subscribed = true
        stopPolling()
        setConnection('realtime')
        catchUp().catch(() => {}) // what happened while not subscribed
      } else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT' || status === 'CLOSED') {
        state.subscribed = false
        startPolling('(reconnecting in the background)') // unless it already polls
      }
    })
  }
  resubscribe = () => {
    if (!state.subscribed && !state.resubscribing && Date.now() - state.channelSince >= RESUBSCRIBE_MS) {
      state.resubscribing = true
      subscribe().catch(() => {}).finally(() => { state.resubscribing = false })
    }
  }

  if (!stopped()) {
    await subscribe()
    // a socket that never opens reports nothing for a while: poll until it does
    setTimeout(() => { if (state.mode === 'connecting') startPolling('(still trying to connect)') }, 3000)
  }
  window.__aefExecution = state // for tests and debugging: what the page applied, in order
  window.__aefRealtime = () => ({ // for tests and debugging: the socket and the channels
    socket: supabase.realtime.connectionState(),
    channels: supabase.getChannels().map((c) => `${c.topic}: ${c.state}`) })
  teardown = () => {
    state.closed = true
    stopPolling()
    clearInterval(state.countdown)
    if (channel) supabase.removeChannel(channel)
  }
}

// ----------------------------------------------------------------------------- history

async function historyPage() {
  const body = h('tbody', {})
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more')
  let cursor = null
  const load = async () => {
    const { executions, nextCursor } = await api('GET', `/api/aef/executions?limit=20${cursor ? `&after=${cursor}` : ''}`)
    for (const e of executions) {
      body.append(h('tr', {},
        h('td', {}, h('a', { href: `#/executions/${e.id}?document=${e.documentId}` }, e.documentTitle)),
        h('td', {}, statusBadge(e.status)), h('td', {}, `${e.progress}%`),
        h('td', {}, when(e.startedAt || e.createdAt)), h('td', {}, duration(e.duration)),
        h('td', {}, h('a', { href: `#/executions/${e.id}/logs`, 'aria-label': `Logs of ${e.documentTitle}, ${when(e.createdAt)}` }, 'Logs'))))
    }
    cursor = nextCursor
    more.hidden = !nextCursor
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', id: 'no-executions' }, 'No executions yet.')))
  }
  more.addEventListener('click', () => load().catch((e) => toast(e.message)))
  show(h('h1', {}, 'History'), h('section', { class: 'card' },
    h('table', { id: 'executions' }, h('caption', {}, 'Your executions, newest first'),
      h('thead', {}, h('tr', {}, ['Workflow', 'Status', 'Progress', 'Started', 'Duration', 'Logs'].map((c) => h('th', { scope: 'col' }, c)))), body),
    more))
  try { await load() } catch (error) { $('#main').append(errorBox(error)) }
}

async function logsPage(executionId) {
  const body = h('tbody', {})
  const pageInfo = h('p', { class: 'muted', 'aria-live': 'polite' })
  const next = h('button', { type: 'button', id: 'logs-next' }, 'Next page')
  const prev = h('button', { type: 'button', id: 'logs-prev', class: 'secondary' }, 'Previous page')
  const cursors = [null] // cursors[i]: `after` of page i
  let index = 0
  const load = async () => {
    const after = cursors[index]
    const data = await api('GET', `/api/aef/logs/${executionId}?limit=50${after ? `&after=${after}` : ''}`)
    body.replaceChildren(...data.logs.map((entry) => h('tr', { class: `level-${entry.level}` },
      h('td', {}, when(entry.timestamp)), h('td', {}, entry.level), h('td', {}, entry.category),
      h('td', {}, entry.stepId || ''), h('td', {}, entry.message))))
    cursors[index + 1] = data.nextCursor
    next.disabled = !data.nextCursor
    prev.disabled = index === 0
    pageInfo.textContent = `Page ${index + 1}${data.nextCursor ? '' : ' (last)'}`
  }
  next.addEventListener('click', () => { index += 1; load().catch((e) => toast(e.message)) })
  prev.addEventListener('click', () => { index = Math.max(0, index - 1); load().catch((e) => toast(e.message)) })
  show(h('h1', {}, 'Execution logs'),
    h('p', {}, h('a', { href: `#/executions/${executionId}` }, 'Back to the execution')),
    h('section', { class: 'card' }, h('table', { id: 'logs' }, h('caption', {}, 'Oldest first, 50 per page'),
      h('thead', {}, h('tr', {}, ['Time', 'Level', 'Category', 'Step', 'Message'].map((c) => h('th', { scope: 'col' }, c)))), body),
    h('div', { class: 'pager' }, prev, pageInfo, next)))
  try { await load() } catch (error) { $('#main').append(errorBox(error)) }
}

// ----------------------------------------------------------------------------- routing

async function route() {
  teardown()
  teardown = () => {}
  if (!session) { signInPage(); return }
  const [path, query] = location.hash.replace(/^#/, '').split('?')
  const params = new URLSearchParams(query || '')
  const parts = path.split('/').filter(Boolean)
  for (const link of document.querySelectorAll('#nav a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#/${parts[0] || 'documents'}`)
    if (link.hasAttribute('aria-current')) link.setAttribute('aria-current', 'page')
  }
  if (parts[0] === 'documents' && parts[1]) await documentPage(parts[1], params)
  else if (parts[0] === 'executions' && parts[1] && parts[2] === 'logs') await logsPage(parts[1])
  else if (parts[0] === 'executions' && parts[1]) await executionPage(parts[1], params)
  else if (parts[0] === 'history') await historyPage()
  else await documentsPage()
  $('#main').focus({ preventScroll: true })
}

function signedIn(next) {
  const changed = (next?.access_token ? next.user?.id : null) !== (session?.user?.id ?? null)
  session = next?.access_token ? next : null
  $('#nav').hidden = !session
  $('#who').hidden = !session
  $('#who-email').textContent = session ? `Signed in as ${session.user.email}` : ''
  return changed
}

async function start() {
  config = await (await fetch('config.json', { cache: 'no-store' })).json()
  config.apiBase = (config.apiBase || config.supabaseUrl).replace(/\/$/, '')
  supabase = window.supabase.createClient(config.supabaseUrl, config.anonKey)
  $('#sign-out').addEventListener('click', async () => {
    await supabase.auth.signOut()
    location.hash = '#/documents'
  })
  const { data } = await supabase.auth.getSession()
  signedIn(data.session)
  supabase.auth.onAuthStateChange((event, next) => {
    // token refreshes keep the page; signing in or out re-renders it
    if (signedIn(next)) setTimeout(route, 0)
  })
  window.addEventListener('hashchange', route)
  await route()
}

start().catch((error) => show(h('h1', {}, 'The console cannot start'), errorBox(error)))
