// Notifications as toasts: P1 (wickets, results) stay longer and stand out.

const KEEP_MS = { P1: 7000, P2: 4000 };
const MAX_SHOWN = 4;

export function toaster(container) {
  return (note) => {
    const el = document.createElement("div");
    el.className = `toast toast-${note.kind} toast-${note.priority}`;
    el.setAttribute("role", note.priority === "P1" ? "alert" : "status");
    el.dataset.id = note.id;
    const over = document.createElement("span");
    over.className = "toast-over";
    over.textContent = note.over ? `${note.over} ov` : "";
    const text = document.createElement("span");
    text.textContent = note.text;
    el.append(text, over);
    container.prepend(el);
    while (container.children.length > MAX_SHOWN) container.lastElementChild.remove();
    setTimeout(() => el.remove(), KEEP_MS[note.priority] ?? KEEP_MS.P2);
  };
}
