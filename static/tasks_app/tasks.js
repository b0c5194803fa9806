// Submits tasks with fetch and keeps one table row per task current. Updates are pushed over one
// Server-Sent Events stream for all unfinished rows; if streaming is unavailable, each row polls
// its JSON status once a second instead. Without this module the forms still work: they post and
// redirect to the job's own page. The upload and email forms post their FormData to the same API.

const STORAGE_KEY = "taskqueue.tasks";
const MAX_REMEMBERED = 50;
const POLL_INTERVAL_MS = 1000;
const TERMINAL = new Set(["finished", "failed", "stopped", "canceled", "expired"]);
const CANCELLABLE = new Set(["queued", "scheduled", "deferred", "started"]);
const TYPE_NAMES = { 0: "Instant", 1: "Short", 2: "Medium", 3: "Long", thumbnail: "Thumbnails", confirmation_email: "Email" };

const form = document.querySelector("#task-form");
const table = document.querySelector("#tasks tbody");
const notice = document.querySelector("#notice");
const emptyHint = document.querySelector("#no-tasks");
const rows = new Map();
const active = new Set(); // rows still waiting for their task to end
const polling = new Set();
const latest = new Map(); // the last status seen per task
let source = null;
let streamingBroken = !("EventSource" in window);

function urlFor(template, taskId) {
  return template.replace("TASK_ID", encodeURIComponent(taskId));
}

function remembered() {
  try {
    const items = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(items) ? items.filter((item) => typeof item?.id === "string") : [];
  } catch {
    return [];
  }
}

function remember(items) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(items.slice(0, MAX_REMEMBERED)));
  } catch {
    // Storage full or disabled: the table still works for this visit.
  }
}

// A notice about the connection goes away with the next status that arrives; one about what
// the person did (a task not created, not canceled) stays until they do something else.
function showNotice(message, { connection = false } = {}) {
  notice.textContent = message;
  notice.dataset.about = connection ? "connection" : "action";
  notice.hidden = false;
}

function clearNotice({ connectionOnly = false } = {}) {
  if (connectionOnly && notice.dataset.about !== "connection") return;
  notice.hidden = true;
  notice.textContent = "";
}

function errorText(body, fallback) {
  if (!body || typeof body !== "object") return fallback;
  const details = Object.values(body.errors || {}).flat();
  return [body.message || fallback, ...details].join(" ");
}

function cell(row, name) {
  return row.querySelector(`[data-field="${name}"]`);
}

function addRow(task) {
  if (rows.has(task.id)) return rows.get(task.id);
  const row = document.createElement("tr");
  row.dataset.taskId = task.id;
  row.dataset.submittedAt = task.submittedAt ?? "";
  const link = document.createElement("a");
  link.href = urlFor(form.dataset.jobUrl, task.id);
  link.textContent = task.id.slice(0, 8);
  link.title = task.id;
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = 0;
  const percent = document.createElement("span");
  percent.dataset.field = "percent";
  percent.textContent = "0%";

  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "secondary cancel";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", () => cancelTask(task.id, cancel));

  const cells = [
    ["id", link],
    ["type", document.createTextNode(TYPE_NAMES[task.type] ?? String(task.type))],
    ["status", document.createTextNode("queued")],
    ["progress", progress],
    ["attempt", document.createTextNode("")],
    ["result", document.createTextNode("")],
    ["actions", cancel],
  ];
  for (const [name, content] of cells) {
    const td = document.createElement("td");
    td.dataset.field = name;
    td.append(content);
    if (name === "progress") td.append(" ", percent);
    row.append(td);
  }
  // Newest first, by when it was submitted: answers may come back in another order than the clicks.
  const older = [...table.children].find((other) => (other.dataset.submittedAt ?? "") <= row.dataset.submittedAt);
  table.insertBefore(row, older ?? null);
  rows.set(task.id, row);
  emptyHint.hidden = true;
  return row;
}

function updateRow(row, data) {
  const status = data.task_status;
  row.dataset.status = status;
  const statusCell = cell(row, "status");
  statusCell.textContent = status;
  statusCell.className = `status status-${status}`;
  const progress = Number.isFinite(data.progress) ? data.progress : 0;
  row.querySelector("progress").value = progress;
  row.querySelector('[data-field="percent"]').textContent = `${progress}%`;
  cell(row, "attempt").textContent = data.max_attempts ? `${data.attempt} of ${data.max_attempts}` : "";
  cell(row, "result").replaceChildren(resultContent(data));
  const cancel = row.querySelector("button.cancel");
  cancel.hidden = !CANCELLABLE.has(status);
  if (status !== "started" || cancel.dataset.stopping !== "true") {
    cancel.disabled = false;
    cancel.textContent = status === "started" ? "Stop" : "Cancel";
  }
}

function resultContent(data) {
  const result = data.task_result;
  if (data.error) return data.error;
  if (Array.isArray(result?.thumbnails) && result.thumbnails.length) return thumbnailLink(result.thumbnails);
  if (typeof result?.email === "string") return `Sent to ${result.email}`;
  if (result === true) return "done";
  if (result !== null && result !== undefined) return JSON.stringify(result);
  if (data.task_status === "scheduled" && data.scheduled_for) {
    return `starts ${new Date(data.scheduled_for).toLocaleTimeString()}`;
  }
  return "";
}

// The smallest thumbnail, linking to the largest.
function thumbnailLink(thumbnails) {
  const bySize = [...thumbnails].sort((a, b) => a.size - b.size);
  const smallest = bySize[0];
  const link = document.createElement("a");
  link.href = bySize[bySize.length - 1].url;
  const image = document.createElement("img");
  image.className = "thumbnail";
  image.src = smallest.url;
  image.width = smallest.width;
  image.height = smallest.height;
  image.alt = `Thumbnail, ${smallest.width} × ${smallest.height} pixels`;
  link.append(image);
  return link;
}

function handleStatus(data) {
  const row = rows.get(data.task_id);
  if (!row) return;
  latest.set(data.task_id, data);
  clearNotice({ connectionOnly: true });
  updateRow(row, data);
  if (TERMINAL.has(data.task_status)) finish(data.task_id);
}

function finish(taskId) {
  active.delete(taskId);
  if (source && active.size === 0) {
    source.close();
    source = null;
  }
}

function markExpired(taskId) {
  const row = rows.get(taskId);
  if (row) updateRow(row, { task_status: "expired", progress: 0, task_result: null, error: "No longer known to the queue." });
  remember(remembered().filter((item) => item.id !== taskId));
  finish(taskId);
}

// --- Push: one EventSource for every unfinished row -----------------------------------------

function watch(taskId) {
  active.add(taskId);
  follow();
}

// Follow every unfinished row: all on one stream, or each by polling once streaming has failed.
function follow() {
  if (streamingBroken) for (const taskId of active) poll(taskId);
  else openStream();
}

function openStream() {
  if (source) source.close();
  source = null;
  if (active.size === 0) return;
  const url = new URL(form.dataset.eventsUrl, window.location.href);
  for (const taskId of active) url.searchParams.append("id", taskId);
  const stream = new EventSource(url);
  let received = false;
  stream.addEventListener("status", (event) => {
    received = true;
    handleStatus(JSON.parse(event.data));
  });
  stream.addEventListener("missing", (event) => {
    received = true;
    markExpired(JSON.parse(event.data).task_id);
  });
  stream.addEventListener("error", () => {
    // After a good start the browser reconnects by itself (and the server resends statuses).
    // A stream that was refused or never delivered anything: fall back to polling.
    if (stream.readyState === EventSource.CLOSED || !received) {
      stream.close();
      if (source === stream) source = null;
      streamingBroken = true;
      follow();
    }
  });
  source = stream;
}

// --- Pull: poll the JSON status once a second ------------------------------------------------

function poll(taskId) {
  if (polling.has(taskId)) return;
  polling.add(taskId);
  pollOnce(taskId);
}

async function pollOnce(taskId) {
  const row = rows.get(taskId);
  if (!row || !row.isConnected || !active.has(taskId)) {
    polling.delete(taskId);
    return;
  }
  let delay = POLL_INTERVAL_MS;
  try {
    const response = await fetch(urlFor(form.dataset.statusUrl, taskId), {
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => null);
    if (response.ok && body?.status === "success") {
      handleStatus(body.data);
    } else if (response.status === 404) {
      markExpired(taskId);
    } else {
      const message = errorText(body, `Could not read the status of task ${taskId} (HTTP ${response.status}).`);
      showNotice(message, { connection: true });
      delay = POLL_INTERVAL_MS * 3;
    }
  } catch {
    showNotice("The server cannot be reached. Retrying…", { connection: true });
    delay = POLL_INTERVAL_MS * 3;
  }
  setTimeout(() => pollOnce(taskId), delay);
}

async function cancelTask(taskId, button) {
  // Stopping ends work already under way, which a slip of the finger should not do.
  if (rows.get(taskId)?.dataset.status === "started" && !window.confirm("Stop this running task? Its work so far is lost.")) {
    return;
  }
  button.disabled = true;
  try {
    const response = await fetch(urlFor(form.dataset.cancelUrl, taskId), {
      method: "POST",
      // The proof of submission the 202 gave, kept with the row in localStorage.
      headers: { Accept: "application/json", "X-Cancel-Token": remembered().find((t) => t.id === taskId)?.cancelToken ?? "" },
    });
    const body = await response.json().catch(() => null);
    if (response.status === 202) {
      button.dataset.stopping = "true";
      button.textContent = "Stopping…";
      return;
    }
    if (response.ok) {
      handleStatus({ progress: 0, ...latest.get(taskId), ...body.data });
      return;
    }
    showNotice(errorText(body, `The task could not be canceled (HTTP ${response.status}).`));
  } catch {
    showNotice("The server cannot be reached. The task was not canceled.");
  }
  button.disabled = false;
}


async function submitTask(type) {
  clearNotice();
  const submittedAt = new Date().toISOString();
  const fields = new FormData(form);
  const payload = { type };
  const delay = String(fields.get("delay") ?? "").trim();
  if (delay !== "") payload.delay = /^\d+$/.test(delay) ? Number(delay) : delay;
  if (fields.get("queue")) payload.queue = fields.get("queue");
  let response;
  let body = null;
  try {
    response = await fetch(form.dataset.createUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
    });
    body = await response.json().catch(() => null);
  } catch {
    showNotice("The server cannot be reached. The task was not created.");
    return;
  }
  if (response.status !== 202 || body?.status !== "success") {
    showNotice(errorText(body, `The task was not created (HTTP ${response.status}).`));
    return;
  }
  track({ id: body.data.task_id, cancelToken: body.data.cancel_token, type, submittedAt });
}

// A task the server accepted: remember it in this browser, give it a row, follow it.
function track(task) {
  remember([task, ...remembered().filter((item) => item.id !== task.id)]);
  addRow(task);
  streamingBroken = !("EventSource" in window); // a new task is a good moment to try pushing again
  watch(task.id);
}

// --- The upload and email forms: their FormData goes to POST /tasks as it is ----------------

function showFormErrors(jobForm, messages) {
  let list = jobForm.querySelector(".errorlist");
  if (!list) {
    list = document.createElement("ul");
    list.className = "errorlist";
    list.setAttribute("role", "alert");
    jobForm.append(list);
  }
  list.replaceChildren(...messages.map((message) => Object.assign(document.createElement("li"), { textContent: message })));
  list.hidden = messages.length === 0;
}

function fieldErrors(body, fallback) {
  const messages = Object.values(body?.errors || {}).flat();
  return messages.length ? messages : [body?.message || fallback];
}

async function submitJobForm(jobForm) {
  clearNotice();
  const submittedAt = new Date().toISOString();
  showFormErrors(jobForm, []);
  const fields = new FormData(jobForm);
  const image = fields.get("image");
  if (image instanceof File && image.size > Number(jobForm.dataset.maxBytes)) {
    // Refused here rather than after uploading it all: the server answers 413 the same way.
    showFormErrors(jobForm, [`The file is larger than the upload limit of ${jobForm.dataset.maxUpload}.`]);
    return;
  }
  const button = jobForm.querySelector('button[type="submit"]');
  button.disabled = true;
  let response;
  let body = null;
  try {
    response = await fetch(form.dataset.createUrl, { method: "POST", headers: { Accept: "application/json" }, body: fields });
    body = await response.json().catch(() => null);
  } catch {
    showFormErrors(jobForm, ["The server cannot be reached. Nothing was sent."]);
    return;
  } finally {
    button.disabled = false;
  }
  if (response.status !== 202 || body?.status !== "success") {
    showFormErrors(jobForm, fieldErrors(body, `The task was not created (HTTP ${response.status}).`));
    return;
  }
  jobForm.reset();
  const cancelToken = body.data.cancel_token;
  track({ id: body.data.task_id, cancelToken, type: fields.get("type"), submittedAt });
}

for (const jobForm of document.querySelectorAll("form.job-form")) {
  jobForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submitJobForm(jobForm);
  });
}

form.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (!button || button.name !== "type") return; // let the browser handle anything unexpected
  event.preventDefault();
  submitTask(Number(button.value));
});

document.querySelector("#clear-finished").addEventListener("click", () => {
  for (const [taskId, row] of rows) {
    if (TERMINAL.has(row.dataset.status)) {
      row.remove();
      rows.delete(taskId);
    }
  }
  remember(remembered().filter((item) => rows.has(item.id)));
  emptyHint.hidden = rows.size > 0;
});

// Tasks started from this browser before a reload: oldest first, so the newest ends on top.
// All of them on one stream, opened once (not one stream opened and closed per row).
for (const task of remembered().reverse()) {
  addRow(task);
  active.add(task.id);
}
follow();
