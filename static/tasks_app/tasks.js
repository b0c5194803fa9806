// Submits tasks with fetch and keeps one table row per task current by polling its JSON status.
// Without this module the form still works: it posts and redirects to the job's own page.

const STORAGE_KEY = "taskqueue.tasks";
const MAX_REMEMBERED = 50;
const POLL_INTERVAL_MS = 1000;
const TERMINAL = new Set(["finished", "failed", "stopped", "canceled", "expired"]);
const TYPE_NAMES = { 0: "Instant", 1: "Short", 2: "Medium", 3: "Long" };

const form = document.querySelector("#task-form");
const table = document.querySelector("#tasks tbody");
const notice = document.querySelector("#notice");
const emptyHint = document.querySelector("#no-tasks");
const rows = new Map();

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

function showNotice(message) {
  notice.textContent = message;
  notice.hidden = false;
}

function clearNotice() {
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

  const cells = [
    ["id", link],
    ["type", document.createTextNode(TYPE_NAMES[task.type] ?? String(task.type))],
    ["status", document.createTextNode("queued")],
    ["progress", progress],
    ["result", document.createTextNode("")],
  ];
  for (const [name, content] of cells) {
    const td = document.createElement("td");
    td.dataset.field = name;
    td.append(content);
    if (name === "progress") td.append(" ", percent);
    row.append(td);
  }
  table.prepend(row);
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
  let result = "";
  if (data.error) result = data.error;
  else if (data.task_result !== null && data.task_result !== undefined) result = JSON.stringify(data.task_result);
  cell(row, "result").textContent = result;
}

async function poll(taskId) {
  const row = rows.get(taskId);
  if (!row || !row.isConnected) return;
  let delay = POLL_INTERVAL_MS;
  try {
    const response = await fetch(urlFor(form.dataset.statusUrl, taskId), {
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    const body = await response.json().catch(() => null);
    if (response.ok && body?.status === "success") {
      clearNotice();
      updateRow(row, body.data);
      if (TERMINAL.has(body.data.task_status)) return;
    } else if (response.status === 404) {
      updateRow(row, { task_status: "expired", progress: 0, task_result: null, error: "No longer known to the queue." });
      remember(remembered().filter((item) => item.id !== taskId));
      return;
    } else {
      showNotice(errorText(body, `Could not read the status of task ${taskId} (HTTP ${response.status}).`));
      delay = POLL_INTERVAL_MS * 3;
    }
  } catch {
    showNotice("The server cannot be reached. Retrying…");
    delay = POLL_INTERVAL_MS * 3;
  }
  setTimeout(() => poll(taskId), delay);
}

async function submitTask(type) {
  clearNotice();
  let response;
  let body = null;
  try {
    response = await fetch(form.dataset.createUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ type }),
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
  const task = { id: body.data.task_id, type, submittedAt: new Date().toISOString() };
  remember([task, ...remembered().filter((item) => item.id !== task.id)]);
  addRow(task);
  poll(task.id);
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
for (const task of remembered().reverse()) {
  addRow(task);
  poll(task.id);
}
