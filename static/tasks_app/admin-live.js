// Keeps an admin page current: fetches it again every few seconds and swaps its content area
// (#content) in place, so the scroll position and this control survive. On by default; the
// interval and the pause are remembered in localStorage for every page that has the control.
// While the person is selecting rows or typing in the content area, refreshes wait.

const STORAGE_KEY = "taskqueue.admin.live";
const INTERVALS = [2, 5, 10, 30, 60];
const DEFAULTS = { enabled: true, seconds: 5 };

const content = document.getElementById("content");
let settings = loadSettings();
let timer = null;
let inFlight = false;
let toggle;
let status;

function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && typeof saved.enabled === "boolean" && INTERVALS.includes(saved.seconds)) return saved;
  } catch {
    // Unreadable or disabled storage: use the defaults.
  }
  return { ...DEFAULTS };
}

function saveSettings() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  } catch {
    // Storage full or disabled: the choice lasts for this page only.
  }
}

function buildControl() {
  const box = document.createElement("div");
  box.className = "live-refresh";
  box.id = "live-refresh";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Automatic refresh");

  toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.id = "live-refresh-toggle";
  toggle.checked = settings.enabled;
  const toggleLabel = document.createElement("label");
  toggleLabel.htmlFor = toggle.id;
  toggleLabel.textContent = "Auto-refresh";

  const interval = document.createElement("select");
  interval.id = "live-refresh-interval";
  interval.setAttribute("aria-label", "Refresh interval");
  for (const seconds of INTERVALS) {
    const option = new Option(seconds < 60 ? `every ${seconds} s` : "every minute", String(seconds));
    option.selected = seconds === settings.seconds;
    interval.append(option);
  }

  const now = document.createElement("button");
  now.type = "button";
  now.className = "live-refresh-now";
  now.textContent = "Refresh now";

  status = document.createElement("span");
  status.className = "live-refresh-status";
  status.setAttribute("role", "status");

  toggle.addEventListener("change", () => {
    settings.enabled = toggle.checked;
    saveSettings();
    box.classList.toggle("paused", !settings.enabled);
    if (settings.enabled) {
      refresh();
    } else {
      cancel();
      showStatus("Paused");
    }
  });
  interval.addEventListener("change", () => {
    settings.seconds = Number(interval.value);
    saveSettings();
    schedule();
  });
  now.addEventListener("click", () => refresh());

  box.classList.toggle("paused", !settings.enabled);
  box.append(toggle, toggleLabel, interval, now, status);
  return box;
}

function showStatus(text) {
  status.textContent = text;
}

function cancel() {
  clearTimeout(timer);
  timer = null;
}

function schedule() {
  cancel();
  if (settings.enabled) timer = setTimeout(refresh, settings.seconds * 1000);
}

// True while the person has changed something in the content area that a swap would throw away:
// a ticked row, typed search text, a chosen action, or a field with the focus.
function hasPendingInput() {
  for (const field of content.querySelectorAll("input, select, textarea")) {
    if (field.type === "hidden" || field.type === "submit" || field.type === "button") continue;
    if (field.type === "checkbox" || field.type === "radio") {
      if (field.checked !== field.defaultChecked) return true;
    } else if (field.tagName === "SELECT") {
      if ([...field.options].some((option) => option.selected !== option.defaultSelected)) return true;
    } else if (field.value !== field.defaultValue) {
      return true;
    }
  }
  const focused = document.activeElement;
  return Boolean(focused && content.contains(focused) && focused.matches("input, select, textarea"));
}

async function refresh() {
  cancel();
  if (inFlight || !settings.enabled) return;
  if (document.hidden) return; // picked up again by visibilitychange
  if (hasPendingInput()) {
    showStatus("Waiting: you have a selection or unsaved input");
    schedule();
    return;
  }
  inFlight = true;
  try {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Live-Refresh": "1" },
    });
    if (response.redirected && new URL(response.url).pathname !== window.location.pathname) {
      // The session ended (the admin sent us to its login page): stop rather than show that page.
      settings.enabled = false;
      toggle.checked = false;
      showStatus("Stopped: you are signed out. Reload the page to sign in.");
      return;
    }
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("content");
    if (!fresh) throw new Error("the page has no content area");
    if (hasPendingInput()) {
      showStatus("Waiting: you have a selection or unsaved input");
      return;
    }
    const folded = disclosureStates();
    content.className = fresh.className;
    content.replaceChildren(...fresh.childNodes);
    for (const [details, name] of disclosures()) if (folded.has(name)) details.open = folded.get(name);
    document.title = page.title;
    rebindChangelistActions();
    showStatus(`Updated ${new Date().toLocaleTimeString()}`);
    document.dispatchEvent(new CustomEvent("live-refresh:updated"));
  } catch (error) {
    showStatus(`Refresh failed (${error.message}); trying again`);
  } finally {
    inFlight = false;
    schedule();
  }
}

// Disclosures (the list's filters, each filter) stay as the person left them across a swap.
function disclosures() {
  return [...content.querySelectorAll("details[id], details[data-filter-title]")].map((details) => [
    details,
    details.id || details.dataset.filterTitle,
  ]);
}

function disclosureStates() {
  return new Map(disclosures().map(([details, name]) => [name, details.open]));
}

// Django's actions.js wires the "select all" box and the counter to the rows it found at load.
// Run it on the new rows, and first remove the document and window listeners the previous run
// added: each holds the old rows, which would otherwise stay in memory for as long as the page.
let actionListeners = [];

function rebindChangelistActions() {
  for (const [target, type, listener] of actionListeners) target.removeEventListener(type, listener);
  actionListeners = [];
  const checkboxes = content.querySelectorAll("tr input.action-select");
  if (typeof window.Actions !== "function" || checkboxes.length === 0) return;
  const originals = [document, window].map((target) => [target, target.addEventListener]);
  for (const [target, add] of originals) {
    target.addEventListener = function (type, listener, options) {
      actionListeners.push([target, type, listener]);
      return add.call(this, type, listener, options);
    };
  }
  try {
    window.Actions(checkboxes);
  } finally {
    for (const [target] of originals) delete target.addEventListener;
  }
}

if (content) {
  const control = buildControl();
  const breadcrumbs = document.querySelector(".breadcrumbs");
  if (breadcrumbs) {
    breadcrumbs.append(control);
  } else {
    content.before(control);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && settings.enabled) refresh();
  });
  if (settings.enabled) {
    showStatus("On");
    schedule();
  } else {
    showStatus("Paused");
  }
}
