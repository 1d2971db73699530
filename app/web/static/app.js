/* optscribe web form: the few things HTMX does not do by itself.
 *
 * - sends the API key (when the server asks for one) with every request of the page;
 * - follows a job's progress on GET /v1/jobs/{id}/events (Server-Sent Events, read with
 *   fetch so the key can travel as a header), then swaps in the job's fragment;
 * - renders LaTeX with KaTeX (trust off) and charts with Chart.js;
 * - highlights the sentence a part of the model came from, on hover and on keyboard focus;
 * - shows a refusal of a form in the result in that form, brings an error into view and
 *   focuses it, and marks a result that a refused new model left on screen as the old one;
 * - cancel and export buttons over the /v1 API.
 *
 * Text from users or the LLM is only ever set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  const KEY_STORE = "optscribe.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#805ad5", "#b7791f", "#c53030", "#319795", "#4a5568"];
  const MAX_LOG_LINES = 300;

  function apiKey() {
    const input = document.getElementById("api-key");
    if (input && input.value) return input.value.trim();
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch (e) {
      return "";
    }
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    return headers;
  }

  function toast(message) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () {
      box.hidden = true;
    }, 12000);
  }

  async function errorMessage(response) {
    try {
      const body = await response.clone().json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) {
      /* not JSON */
    }
    return "The server answered " + response.status + " " + (response.statusText || "");
  }

  function errorFromXhr(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) {
      /* not JSON */
    }
    return "The server answered " + xhr.status;
  }

  // ------------------------------------------------------------------ HTMX wiring

  document.addEventListener("htmx:configRequest", function (evt) {
    const key = apiKey();
    if (key) evt.detail.headers["X-API-Key"] = key;
  });

  document.addEventListener("htmx:beforeSwap", function (evt) {
    const xhr = evt.detail.xhr;
    const type = xhr.getResponseHeader("Content-Type") || "";
    if (xhr.status >= 400 && type.indexOf("text/html") !== 0) {
      // An error of the API (401, 429, 503, ...): say it, never swap JSON into the page.
      evt.detail.shouldSwap = false;
      evt.detail.isError = false;
      toast(errorFromXhr(xhr));
      return;
    }
    // A refusal of a form in the result (the model editor, a constraint edit, a suggestion,
    // the answers): shown in that form, where the person acted, not in #run far above. A
    // job it starts still goes to #run, and clears the result (progress.html).
    // (The event fires on the target, #run; the form that asked is the request's element.)
    const asked = evt.detail.requestConfig ? evt.detail.requestConfig.elt : null;
    const form = asked instanceof Element ? asked.closest("form") : null;
    if (xhr.status === 422 && form && form.closest("#result")) {
      evt.detail.target = errorSlot(form);
      evt.detail.swapOverride = "innerHTML";
    }
  });

  function errorSlot(form) {
    let slot = form.querySelector(":scope > .form-error");
    if (!slot) {
      slot = document.createElement("div");
      slot.className = "form-error";
      form.appendChild(slot);
    }
    return slot;
  }

  const STALE_NOTE =
    "This result is of the model solved before: what you just sent was not solved (see the error above).";
  const KEPT_NOTE =
    "Nothing was solved: the result on this page is still that of the model before this change.";

  document.addEventListener("htmx:afterSwap", function (evt) {
    const target = evt.detail.target;
    if (!(target instanceof Element)) return;
    const error = target.querySelector(".error[tabindex='-1']");
    if (!error) return;
    if (target.classList.contains("form-error")) {
      if (target.closest("article.job")) {
        // (not in the questions' form: there is no result yet)
        const kept = document.createElement("p");
        kept.className = "note";
        kept.textContent = KEPT_NOTE;
        error.appendChild(kept);
      }
    } else if (target.id === "run") {
      markStale(document.querySelector("#result article.job"));
    }
    focusError(error);
  });

  // The error is where the person acted, or above the result: bring it into view and give it
  // the focus, so that it is seen and read out whatever was on screen.
  function focusError(error) {
    error.focus({ preventScroll: true });
    error.scrollIntoView({ block: "center" });
  }

  function markStale(job) {
    if (!job || job.classList.contains("stale")) return;
    job.classList.add("stale");
    const note = document.createElement("p");
    note.className = "stale-note";
    note.textContent = STALE_NOTE;
    job.insertBefore(note, job.firstChild);
  }

  document.addEventListener("htmx:responseError", function (evt) {
    toast(errorFromXhr(evt.detail.xhr));
  });

  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached.");
  });

  document.addEventListener("htmx:load", function (evt) {
    init(evt.detail.elt);
  });

  document.addEventListener("DOMContentLoaded", function () {
    const input = document.getElementById("api-key");
    if (input) {
      try {
        input.value = sessionStorage.getItem(KEY_STORE) || "";
      } catch (e) {
        /* storage off */
      }
      input.addEventListener("change", function () {
        try {
          sessionStorage.setItem(KEY_STORE, input.value.trim());
        } catch (e) {
          /* storage off */
        }
      });
    }
    if (!window.htmx) init(document.body);
  });

  function init(root) {
    if (!root || !root.querySelectorAll) return;
    renderTex(root);
    root.querySelectorAll("canvas[data-chart]").forEach(drawChart);
    const followed = root.matches && root.matches("[data-job-id]") ? [root] : [];
    root.querySelectorAll("[data-job-id]").forEach(function (el) {
      followed.push(el);
    });
    followed.forEach(follow);
    root.querySelectorAll("input[type=file][data-csv-into]").forEach(wireFile);
    const heading = root.querySelector("h2[tabindex='-1']");
    if (heading && root !== document.body) heading.focus({ preventScroll: false });
  }

  // ------------------------------------------------------------------ KaTeX

  function renderTex(root) {
    if (!window.katex) return;
    root.querySelectorAll("[data-tex]").forEach(function (el) {
      if (el.dataset.rendered) return;
      const plain = el.textContent;
      try {
        window.katex.render(el.dataset.tex, el, {
          displayMode: el.classList.contains("display"),
          throwOnError: false,
          trust: false,
          strict: "ignore",
          maxSize: 20,
          maxExpand: 1000,
          output: "htmlAndMathml",
        });
        el.dataset.rendered = "1";
      } catch (e) {
        el.textContent = plain; // leave the expression as text
      }
    });
  }

  // ------------------------------------------------------------------ charts

  function drawChart(canvas) {
    if (!window.Chart || canvas.dataset.drawn) return;
    let spec;
    try {
      spec = JSON.parse(canvas.dataset.chart);
    } catch (e) {
      return;
    }
    canvas.dataset.drawn = "1";
    const groups = [];
    spec.items.forEach(function (it) {
      if (groups.indexOf(it.group) < 0) groups.push(it.group);
    });
    const labels = spec.items.map(function (it) {
      return it.label;
    });
    const box = canvas.parentElement;
    if (box) box.style.height = Math.max(180, Math.min(900, 28 * labels.length + 70)) + "px";
    // A Gantt bar floats from start to end; a quantity's bar starts at zero.
    const point =
      spec.kind === "gantt"
        ? function (it) {
            return { x: [it.start, it.end], y: it.label };
          }
        : function (it) {
            return { x: it.value, y: it.label };
          };
    const datasets = groups.map(function (g, i) {
      return {
        label: g,
        grouped: false,
        backgroundColor: PALETTE[i % PALETTE.length],
        data: spec.items
          .filter(function (it) {
            return it.group === g;
          })
          .map(point),
      };
    });
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        indexAxis: "y",
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: groups.length > 1 }, title: { display: false } },
        scales: { x: { beginAtZero: true, title: { display: Boolean(spec.axis), text: spec.axis || "" } } },
      },
    });
  }

  // ------------------------------------------------------------------ job progress

  const WORDS = {
    queued: "Queued",
    running: "Running",
    needs_input: "Waiting for your answers",
    succeeded: "Finished",
    failed: "Failed",
    cancelled: "Cancelled",
    formalizing: "Writing the model from the text (LLM)",
    starting: "Starting the solver",
    lowering: "Building the solver model",
    solving: "Solving",
    explaining: "Explaining why there is no plan",
    done: "", // the job's status says it ("Finished"): one line, not two
  };

  function words(name) {
    return Object.prototype.hasOwnProperty.call(WORDS, name) ? WORDS[name] : String(name);
  }

  function addStage(list, text) {
    if (!text) return;
    const last = list.lastElementChild;
    if (last && last.textContent === text) return;
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
  }

  function handleEvent(el, kind, data) {
    const list = el.querySelector(".stages");
    const status = el.querySelector("[data-status]");
    if (kind === "status" && data.status) {
      const said = data.cancel_requested && !TERMINAL.has(data.status) ? "Cancel requested" : words(data.status);
      if (status) status.textContent = said;
      addStage(list, said);
      return data.status;
    }
    if (kind === "stage" && data.stage) {
      addStage(list, words(data.stage));
      return null;
    }
    if (kind === "log") {
      const line = data.line || data.message || data.text;
      if (typeof line === "string") {
        const pre = el.querySelector(".log");
        const box = el.querySelector(".log-box");
        if (pre && box) {
          box.hidden = false;
          const lines = (pre.textContent + line + "\n").split("\n");
          pre.textContent = lines.slice(-MAX_LOG_LINES).join("\n");
        }
      } else if (data.stage) {
        addStage(list, words(data.stage));
      }
    }
    return null;
  }

  async function follow(el) {
    if (el.dataset.following) return;
    el.dataset.following = "1";
    const id = el.dataset.jobId;
    let lastId = "";
    let status = "";
    for (let round = 0; round < 50; round++) {
      let response;
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId) headers["Last-Event-ID"] = lastId;
        response = await fetch("/v1/jobs/" + encodeURIComponent(id) + "/events", { headers: headers });
      } catch (e) {
        await sleep(1000);
        continue;
      }
      if (!response.ok || !response.body) {
        toast(await errorMessage(response));
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      try {
        for (;;) {
          const chunk = await reader.read();
          if (chunk.done) break;
          buffer += decoder.decode(chunk.value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let kind = "message";
            let data = "";
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) kind = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
              else if (line.indexOf("id:") === 0) lastId = line.slice(3).trim();
            });
            if (!data) continue;
            try {
              const s = handleEvent(el, kind, JSON.parse(data));
              if (s) status = s;
            } catch (e) {
              /* a malformed event: skip it */
            }
          }
        }
      } catch (e) {
        /* the connection dropped: resume after the last event */
      }
      if (TERMINAL.has(status) || status === "needs_input") break;
      // The stream ended without an end state (a proxy closed it): ask, and resume.
      try {
        const r = await fetch("/v1/jobs/" + encodeURIComponent(id), { headers: authHeaders() });
        if (r.ok) {
          const job = await r.json();
          status = job.status;
          if (TERMINAL.has(status) || status === "needs_input") break;
        }
      } catch (e) {
        /* try again */
      }
      await sleep(500);
    }
    const cancel = el.querySelector("[data-cancel]");
    if (cancel) cancel.hidden = true;
    if (window.htmx) {
      window.htmx.ajax("GET", "/ui/jobs/" + encodeURIComponent(id), { target: "#result", swap: "innerHTML" });
    }
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  // ------------------------------------------------------------------ buttons

  document.addEventListener("click", async function (evt) {
    const target = evt.target instanceof Element ? evt.target : null;
    if (!target) return;
    const cancel = target.closest("[data-cancel]");
    if (cancel) {
      cancel.disabled = true;
      const r = await fetch("/v1/jobs/" + encodeURIComponent(cancel.dataset.cancel) + "/cancel", {
        method: "POST",
        headers: authHeaders(),
      });
      if (!r.ok) {
        cancel.disabled = false;
        toast(await errorMessage(r));
      }
      return;
    }
    const exp = target.closest("[data-export]");
    if (exp) exportModel(exp);
  });

  const EXTENSIONS = { lp: "lp", mps: "mps", pyomo: "py", json: "json" };

  async function exportModel(button) {
    const editor = button.closest(".editor");
    const area = editor ? editor.querySelector("textarea[data-model-json]") : null;
    if (!area) return;
    let model;
    try {
      model = JSON.parse(area.value);
    } catch (e) {
      toast("The model in the editor is not valid JSON: " + e.message);
      return;
    }
    const fmt = button.dataset.export;
    const r = await fetch("/v1/export?format=" + encodeURIComponent(fmt), {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ model: model }),
    });
    if (!r.ok) {
      toast(await errorMessage(r));
      return;
    }
    const blob = await r.blob();
    const link = document.createElement("a");
    const name = (button.dataset.modelName || "model").replace(/[^A-Za-z0-9_.-]/g, "_");
    link.href = URL.createObjectURL(blob);
    link.download = name + "." + (EXTENSIONS[fmt] || "txt");
    document.body.appendChild(link);
    link.click();
    setTimeout(function () {
      URL.revokeObjectURL(link.href);
      link.remove();
    }, 1000);
  }

  function wireFile(input) {
    if (input.dataset.wired) return;
    input.dataset.wired = "1";
    input.addEventListener("change", function () {
      const file = input.files && input.files[0];
      if (!file) return;
      const reader = new FileReader();
      reader.onload = function () {
        const area = document.getElementById(input.dataset.csvInto);
        if (area) area.value = String(reader.result || "");
        const name = document.getElementById(input.dataset.nameInto);
        if (name && !name.value) {
          name.value = file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_]/g, "_").replace(/^([0-9])/, "t$1");
        }
      };
      reader.readAsText(file);
    });
  }

  // ------------------------------------------------------------------ highlighting

  function refsOf(el) {
    if (el.dataset.ref) return [el.dataset.ref];
    if (el.dataset.refs) return el.dataset.refs.split(" ");
    return [];
  }

  function setHighlight(source, on) {
    const scope = source.closest(".job") || document;
    const keys = refsOf(source);
    scope.querySelectorAll("mark[data-refs], [data-ref]").forEach(function (el) {
      const theirs = refsOf(el);
      if (theirs.some(function (k) {
        return keys.indexOf(k) >= 0;
      })) {
        el.classList.toggle("hl", on);
      }
    });
  }

  function highlightable(evt) {
    const t = evt.target instanceof Element ? evt.target : null;
    return t ? t.closest("[data-ref], mark[data-refs]") : null;
  }

  document.addEventListener("mouseover", function (evt) {
    const el = highlightable(evt);
    if (el) setHighlight(el, true);
  });
  document.addEventListener("mouseout", function (evt) {
    const el = highlightable(evt);
    if (el) setHighlight(el, false);
  });
  document.addEventListener("focusin", function (evt) {
    const el = highlightable(evt);
    if (el) setHighlight(el, true);
  });
  document.addEventListener("focusout", function (evt) {
    const el = highlightable(evt);
    if (el) setHighlight(el, false);
  });
})();
