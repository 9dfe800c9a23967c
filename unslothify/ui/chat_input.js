// The chat box's input row (unslothify/widgets.py, ChatBox). It runs in the browser, so what the user submits
// goes to the kernel as one message holding the whole text, whether or not the kernel is busy: ipywidgets'
// Text widget syncs keystrokes as state, which the frontend holds back while the kernel is busy, so a submit
// could reach the kernel before the text it submits. Until the kernel acknowledges a question, the row says it
// is queued behind the running cells.
function render({ model, el }) {
  el.classList.add("unslothify-chat-input");
  const row = document.createElement("div");
  row.className = "chat-row";
  const input = document.createElement("input");
  input.type = "text";
  input.className = "chat-text";
  input.placeholder = model.get("placeholder");
  const send = document.createElement("button");
  send.className = "chat-send";
  send.textContent = "Send";
  const clear = document.createElement("button");
  clear.className = "chat-clear";
  clear.textContent = "Clear";
  const note = document.createElement("div");
  note.className = "chat-note";
  let asked = 0;
  let acked = 0;
  let timer = null;

  function show() {
    const waiting = asked - acked;
    note.textContent = waiting <= 0 ? "" : waiting === 1
      ? "Queued: your question is answered when the running cells finish."
      : `Queued: ${waiting} questions are answered, in order, when the running cells finish.`;
  }
  function ask() {
    const text = input.value.trim();
    if (!text) return;
    asked += 1;
    model.send({ type: "ask", text: text, n: asked });
    input.value = "";
    clearTimeout(timer);
    timer = setTimeout(show, 400); // an idle kernel answers before this: no note then
  }
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      ask();
    }
  });
  send.addEventListener("click", ask);
  clear.addEventListener("click", () => model.send({ type: "clear" }));
  model.on("msg:custom", (msg) => {
    if (msg.type === "ack") {
      acked = Math.max(acked, msg.n);
      show();
    }
  });
  row.append(input, send, clear);
  el.append(row, note);
}

export default { render };
