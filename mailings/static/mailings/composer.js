// The block composer (mailings/composer/widgets.py: BlocksWidget).
//
// A newsletter is a list of blocks kept as JSON in a hidden input; this script
// builds the editor around it: add, edit, reorder (drag, or the move buttons
// for keyboard users) and remove blocks, rich text through django-prose-editor,
// image upload, and a menu that inserts merge fields, so nobody types template
// syntax. Loaded as a module from static files only: the admin's
// Content-Security-Policy allows no inline script or style, so the editor is
// made with injectCSS off and its styles come from the stylesheets.
import {
  Bold,
  BulletList,
  Document,
  Dropcursor,
  Editor,
  Extension,
  Gapcursor,
  HardBreak,
  History,
  Italic,
  Link,
  ListItem,
  Menu,
  OrderedList,
  Paragraph,
  Plugin,
  pm,
  Text,
} from "../django_prose_editor/editor.js"

const LINK_TEXT = {
  preferences_url: "manage your email preferences",
  unsubscribe_url: "unsubscribe",
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue
    if (key === "className") node.className = value
    else if (key === "text") node.textContent = value
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value)
    else if (key in node && !key.includes("-")) node[key] = value
    else node.setAttribute(key, value === true ? "" : value)
  }
  for (const child of [].concat(children)) {
    if (child !== null && child !== undefined && child !== false) node.append(child)
  }
  return node
}

function newId() {
  return `b${Math.random().toString(36).slice(2, 10)}`
}

function csrfToken(root) {
  const field = root.closest("form")?.querySelector("[name=csrfmiddlewaretoken]")
  if (field) return field.value
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="))
  return cookie ? decodeURIComponent(cookie.split("=")[1]) : ""
}

function emptyHtml(html) {
  return /^<(\w+)(\s[^>]*)?><\/\1>$/i.test(html) ? "" : html
}

let fieldCount = 0

// Merge fields in rich text are shown as labelled pills (the text itself stays
// as the sending engine reads it).
const TOKEN = /\{\{\s*([a-z_]+)\s*(?:\|\s*default\s*:\s*"([^"]*)"\s*)?\}\}/g
const MergeTokens = Extension.create({
  name: "mergeTokens",
  addProseMirrorPlugins() {
    return [
      new Plugin({
        props: {
          decorations(state) {
            const found = []
            state.doc.descendants((node, position) => {
              if (!node.isText) return
              for (const match of node.text.matchAll(TOKEN)) {
                const start = position + match.index
                const what = match[1].replaceAll("_", " ")
                const title = match[2] ? `${what}, or “${match[2]}” if unknown` : what
                found.push(
                  pm.view.Decoration.inline(start, start + match[0].length, {
                    class: "rc-token",
                    title: `Merge field: ${title}`,
                  }),
                )
              }
            })
            return pm.view.DecorationSet.create(state.doc, found)
          },
        },
      }),
    ]
  },
})

// A labelled field; `input` is the control, `hint` optional help beneath.
function field(label, input, hint) {
  fieldCount += 1
  input.id = input.id || `rc-field-${fieldCount}`
  const parts = [el("label", { htmlFor: input.id, text: label }), input]
  if (hint) {
    const hintId = `${input.id}-hint`
    input.setAttribute("aria-describedby", hintId)
    parts.push(el("p", { className: "rc-hint", id: hintId, text: hint }))
  }
  return el("div", { className: "rc-field" }, parts)
}

function token(item, fallback) {
  return item.kind === "text" && fallback
    ? `{{ ${item.name}|default:"${fallback.replaceAll('"', "'")}" }}`
    : `{{ ${item.name} }}`
}

// Put a merge field into a text box at the cursor (a link field fills an address box).
function insertIntoInput(input, item, fallback) {
  if (item.kind === "link") {
    input.value = token(item, fallback)
  } else {
    const start = input.selectionStart ?? input.value.length
    const end = input.selectionEnd ?? input.value.length
    input.setRangeText(token(item, fallback), start, end, "end")
  }
  input.focus()
  input.dispatchEvent(new Event("input", { bubbles: true }))
}

// The "Insert merge field" menu: `target.insert(item, fallback)` puts the choice in place.
function mergeMenu(fields, target) {
  const fallback = el("input", { type: "text", value: "friend", className: "rc-fallback" })
  const items = fields.map((item) =>
    el("li", {}, [
      el("button", {
        type: "button",
        className: "rc-merge-item",
        "data-field": item.name,
        text: item.label,
        onmousedown: (event) => event.preventDefault(), // keep the editor's selection
        onclick: () => {
          target.insert(item, fallback.value.trim())
          menu.open = false
        },
      }),
    ]),
  )
  const menu = el("details", { className: "rc-merge" }, [
    el("summary", { className: "rc-button", text: "Insert merge field" }),
    el("div", { className: "rc-merge-panel" }, [
      el("ul", {}, items),
      field("If we do not know a name or postcode, write", fallback),
    ]),
  ])
  return menu
}

class Block {
  constructor(composer, data) {
    this.composer = composer
    this.data = { ...data }
    this.id = data.id || newId()
    this.type = data.type
    this.editors = []
    this.target = null // where the merge-field menu inserts: {editor} or {input}
    this.readers = {}
    this.element = this.build()
  }

  label() {
    const known = this.composer.types.find((kind) => kind.type === this.type)
    return known ? known.label : this.type
  }

  changed() {
    this.composer.sync()
  }

  input(key, props = {}) {
    const input = el(props.multiline ? "textarea" : "input", {
      type: props.multiline ? undefined : props.type || "text",
      value: this.data[key] ?? props.default ?? "",
      className: props.className || "vTextField",
      placeholder: props.placeholder,
      rows: props.rows,
      disabled: props.disabled,
      "data-key": key,
      "data-merge": props.merge,
    })
    input.addEventListener("input", () => this.changed())
    input.addEventListener("focus", () => {
      this.target = { input }
    })
    this.readers[key] = () =>
      props.type === "number" ? Number.parseInt(input.value, 10) || null : input.value
    return input
  }

  rich(key, container, label, value) {
    fieldCount += 1
    const labelId = `rc-rich-${fieldCount}`
    const box = el("div", { className: "rc-field rc-rich" }, [
      el("span", { className: "rc-label", id: labelId, text: label }),
    ])
    const mount = el("div", { className: "prose-editor" })
    box.append(mount)
    container.append(box)
    const editor = new Editor({
      element: mount,
      injectCSS: false,
      extensions: [
        Document,
        Paragraph,
        Text,
        HardBreak,
        Bold,
        Italic,
        Link,
        BulletList,
        OrderedList,
        ListItem,
        History,
        Dropcursor,
        Gapcursor,
        Menu,
        MergeTokens,
      ],
      content: value || "",
      editorProps: { attributes: { "aria-labelledby": labelId, role: "textbox", "aria-multiline": "true" } },
      onUpdate: () => this.changed(),
      onFocus: () => {
        this.target = { editor }
      },
    })
    this.editors.push(editor)
    return () => emptyHtml(editor.getHTML())
  }

  build() {
    const item = el("li", {
      className: `rc-block rc-type-${this.type}`,
      id: `block-${this.id}`,
      "data-block-id": this.id,
      "data-type": this.type,
      tabIndex: -1,
    })
    const title = el("span", { className: "rc-title", text: this.label() })
    const handle = el("span", {
      className: "rc-handle",
      draggable: "true",
      title: "Drag to move",
      "aria-hidden": "true",
      text: "⠿",
    })
    const tools = el("div", { className: "rc-tools" })
    const head = el("div", { className: "rc-head" }, [handle, title, tools])
    const body = el("div", { className: "rc-body" })
    item.append(head, body)
    const hasWords = this.buildBody(body)
    if (hasWords && !this.locked) tools.append(this.composer.mergeMenu(this))
    tools.append(
      el("button", {
        type: "button",
        className: "rc-button rc-up",
        text: "↑",
        title: "Move up",
        "aria-label": `Move ${this.label()} block up`,
        onclick: () => this.composer.move(this, -1),
      }),
      el("button", {
        type: "button",
        className: "rc-button rc-down",
        text: "↓",
        title: "Move down",
        "aria-label": `Move ${this.label()} block down`,
        onclick: () => this.composer.move(this, 1),
      }),
      el("button", {
        type: "button",
        className: "rc-button rc-remove",
        text: "Remove",
        "aria-label": `Remove ${this.label()} block`,
        onclick: () => this.composer.remove(this),
      }),
    )
    handle.addEventListener("dragstart", (event) => this.composer.dragStart(this, event))
    handle.addEventListener("dragend", () => this.composer.dragEnd())
    return item
  }

  // Fill the block's body; return whether it has words to put merge fields in.
  buildBody(body) {
    const d = this.data
    switch (this.type) {
      case "heading": {
        const level = el(
          "select",
          { "data-key": "level", onchange: () => this.changed() },
          [
            el("option", { value: "1", text: "Large" }),
            el("option", { value: "2", text: "Medium" }),
            el("option", { value: "3", text: "Small" }),
          ],
        )
        level.value = String(d.level || 1)
        this.readers.level = () => Number.parseInt(level.value, 10)
        body.append(
          el("div", { className: "rc-row" }, [
            field("Heading", this.input("text", { className: "vTextField rc-wide" })),
            field("Size", level),
          ]),
        )
        return true
      }
      case "text":
        this.readers.html = this.rich("html", body, "Text", d.html)
        return true
      case "quote":
        this.readers.html = this.rich("html", body, "Quote", d.html)
        body.append(field("Who said it", this.input("cite"), "Optional."))
        return true
      case "divider":
        body.append(el("p", { className: "rc-hint", text: "A thin line between sections." }))
        return false
      case "columns": {
        const row = el("div", { className: "rc-columns" })
        body.append(row)
        const columns = d.columns || [{ html: "" }, { html: "" }]
        const left = this.rich("left", row, "Left column", columns[0]?.html)
        const right = this.rich("right", row, "Right column", columns[1]?.html)
        this.readers.columns = () => [{ html: left() }, { html: right() }]
        return true
      }
      case "button":
        body.append(
          el("div", { className: "rc-row" }, [
            field("Button text", this.input("label", { placeholder: "Sign the petition" })),
            field(
              "Link",
              this.input("url", { type: "url", placeholder: "https://", merge: "link" }),
            ),
          ]),
        )
        return true
      case "action":
        body.append(
          field("Headline", this.input("headline", { className: "vTextField rc-wide" })),
        )
        this.readers.html = this.rich("html", body, "Text", d.html)
        body.append(
          el("div", { className: "rc-row" }, [
            field("Button text", this.input("label", { placeholder: "Write to your MP" })),
            field(
              "Link",
              this.input("url", { type: "url", placeholder: "https://", merge: "link" }),
            ),
          ]),
        )
        return true
      case "image":
        this.buildImage(body)
        return false
      case "html": {
        this.locked = !this.composer.allowHtml
        const code = this.input("html", {
          multiline: true,
          rows: 10,
          className: "vLargeTextField rc-code",
          disabled: this.locked,
        })
        body.append(
          field(
            "HTML",
            code,
            this.locked
              ? "Only staff allowed to edit HTML can change this block; you can move or remove it. It is sent as it is."
              : "Sent as written, after unsafe parts (scripts, forms) are removed.",
          ),
        )
        return false
      }
      default:
        body.append(el("p", { className: "rc-hint", text: `A block of type “${this.type}”.` }))
        this.readers = {}
        return false
    }
  }

  buildImage(body) {
    const preview = el("img", { className: "rc-image-preview", alt: "", hidden: !this.data.src })
    if (this.data.src) preview.src = this.data.src
    const src = this.input("src", { type: "url", placeholder: "Upload a file, or paste an image address" })
    src.addEventListener("input", () => {
      preview.src = src.value
      preview.hidden = !src.value
    })
    const status = el("p", { className: "rc-hint", role: "status" })
    const file = el("input", { type: "file", accept: "image/png,image/jpeg,image/gif,image/webp" })
    file.addEventListener("change", async () => {
      if (!file.files.length) return
      const data = new FormData()
      data.append("image", file.files[0])
      status.textContent = "Uploading…"
      try {
        const response = await fetch(this.composer.uploadUrl, {
          method: "POST",
          body: data,
          headers: { "X-CSRFToken": csrfToken(this.composer.root) },
          credentials: "same-origin",
        })
        const answer = await response.json()
        if (!response.ok) throw new Error(answer.error || "The image could not be uploaded.")
        src.value = answer.src
        preview.src = answer.src
        preview.hidden = false
        status.textContent = "Uploaded."
        this.changed()
      } catch (error) {
        status.textContent = error.message
      }
      file.value = ""
    })
    const alt = this.input("alt", { className: "vTextField rc-wide" })
    const altField = field(
      "Alt text",
      alt,
      "Describe the picture for people who cannot see it, e.g. “Survivors at the memorial in Kigali”. Required.",
    )
    const flag = () => altField.classList.toggle("rc-missing", !alt.value.trim())
    alt.addEventListener("input", flag)
    flag()
    const uploadField = this.composer.uploadUrl ? field("Upload an image", file) : null
    body.append(
      el("div", { className: "rc-image" }, [
        preview,
        el("div", { className: "rc-image-fields" }, [
          uploadField,
          field("Image address", src),
          status,
          altField,
          el("div", { className: "rc-row" }, [
            field(
              "Width in pixels",
              this.input("width", { type: "number", default: 600, className: "vIntegerField" }),
              "600 fills the email.",
            ),
            field("Link (optional)", this.input("link", { type: "url", placeholder: "https://" })),
          ]),
        ]),
      ]),
    )
  }

  read() {
    const out = { ...this.data, id: this.id, type: this.type }
    for (const [key, reader] of Object.entries(this.readers)) out[key] = reader()
    if (this.type === "image" && !out.width) out.width = 600
    return out
  }

  // Insert a merge field where the cursor last was in this block.
  insert(item, fallback) {
    const target = this.target || this.defaultTarget(item)
    if (!target) return
    if (target.input) {
      insertIntoInput(target.input, item, fallback)
      return
    }
    const chain = target.editor.chain().focus()
    if (item.kind !== "link") {
      chain.insertContent({ type: "text", text: token(item, fallback) }).run()
    } else if (target.editor.state.selection.empty) {
      chain
        .insertContent({
          type: "text",
          text: LINK_TEXT[item.name] || item.label,
          marks: [{ type: "link", attrs: { href: token(item, fallback) } }],
        })
        .run()
    } else {
      chain.extendMarkRange("link").setLink({ href: token(item, fallback) }).run()
    }
  }

  defaultTarget(item) {
    if (item.kind === "link") {
      const url = this.element.querySelector("input[data-merge=link]")
      if (url) return { input: url }
    }
    if (this.editors.length) return { editor: this.editors[0] }
    const input = this.element.querySelector("input[type=text]:not([disabled])")
    return input ? { input } : null
  }

  destroy() {
    for (const editor of this.editors) editor.destroy()
  }
}

class Composer {
  constructor(root) {
    this.root = root
    const settings = JSON.parse(root.dataset.composer)
    this.allowHtml = settings.allowHtml
    this.uploadUrl = settings.uploadUrl
    this.types = settings.types
    this.mergeFields = settings.mergeFields
    this.value = root.querySelector("[data-composer-value]")
    let data = []
    try {
      data = JSON.parse(this.value.value || "[]")
    } catch {
      data = []
    }
    root.querySelector(".rally-composer-loading")?.remove()
    this.list = el("ol", { className: "rc-list", "aria-label": "Blocks, in order" })
    this.empty = el("p", {
      className: "rc-empty",
      text: "No blocks yet. Add a heading, some text, an image or a button below.",
    })
    this.live = el("p", { className: "rc-live", "aria-live": "polite" })
    root.append(this.empty, this.list, this.addBar(), this.live)
    this.blocks = []
    for (const item of Array.isArray(data) ? data : []) this.add(item, { focus: false })
    this.list.addEventListener("dragover", (event) => this.dragOver(event))
    this.list.addEventListener("drop", (event) => event.preventDefault())
    root.closest("form")?.addEventListener("submit", () => this.sync())
    window.addEventListener("hashchange", () => this.showFlagged())
    this.showFlagged()
    this.sync()
  }

  addBar() {
    const buttons = this.types
      .filter((kind) => kind.type !== "html" || this.allowHtml)
      .map((kind) =>
        el("button", {
          type: "button",
          className: "rc-add",
          "data-type": kind.type,
          text: kind.label,
          onclick: () => this.add({ type: kind.type }, { focus: true }),
        }),
      )
    return el("div", { className: "rc-addbar", role: "group", "aria-label": "Add a block" }, [
      el("span", { className: "rc-addbar-title", text: "Add a block:" }),
      ...buttons,
    ])
  }

  mergeMenu(block) {
    return mergeMenu(this.mergeFields, block)
  }

  add(data, { focus }) {
    const block = new Block(this, data)
    this.blocks.push(block)
    this.list.append(block.element)
    if (focus) {
      const first = block.element.querySelector(".rc-body input:not([type=file]), .rc-body textarea")
      if (block.editors.length) block.editors[0].commands.focus()
      else if (first) first.focus()
      else block.element.focus()
      this.say(`${block.label()} block added at the end.`)
    }
    this.sync()
    return block
  }

  remove(block) {
    const { id, type, level, width, columns, ...words } = block.read()
    const hasContent = [...Object.values(words), ...(columns || []).map((column) => column.html)].some(
      (value) => typeof value === "string" && value.trim(),
    )
    if (hasContent && !window.confirm(`Remove this ${block.label().toLowerCase()} block and its content?`)) return
    const index = this.blocks.indexOf(block)
    this.blocks.splice(index, 1)
    block.destroy()
    block.element.remove()
    const next = this.blocks[Math.min(index, this.blocks.length - 1)]
    if (next) next.element.focus()
    this.say(`${block.label()} block removed.`)
    this.sync()
  }

  move(block, step) {
    const index = this.blocks.indexOf(block)
    const to = index + step
    if (to < 0 || to >= this.blocks.length) return
    this.placeAt(block, to)
    const button = block.element.querySelector(step < 0 ? ".rc-up" : ".rc-down")
    button?.focus()
    this.say(`${block.label()} block moved to position ${to + 1} of ${this.blocks.length}.`)
  }

  placeAt(block, to) {
    const from = this.blocks.indexOf(block)
    this.blocks.splice(from, 1)
    this.blocks.splice(to, 0, block)
    const after = this.blocks[to + 1]
    this.list.insertBefore(block.element, after ? after.element : null)
    this.sync()
  }

  dragStart(block, event) {
    this.dragging = block
    block.element.classList.add("rc-dragging")
    event.dataTransfer.effectAllowed = "move"
    event.dataTransfer.setData("text/plain", block.id)
    event.dataTransfer.setDragImage(block.element, 20, 20)
  }

  dragOver(event) {
    if (!this.dragging) return
    event.preventDefault()
    const over = event.target.closest?.(".rc-block")
    if (!over || over === this.dragging.element) return
    const target = this.blocks.find((block) => block.element === over)
    const rect = over.getBoundingClientRect()
    const below = event.clientY > rect.top + rect.height / 2
    let to = this.blocks.indexOf(target) + (below ? 1 : 0)
    if (this.blocks.indexOf(this.dragging) < to) to -= 1
    if (to !== this.blocks.indexOf(this.dragging)) this.placeAt(this.dragging, to)
  }

  dragEnd() {
    if (!this.dragging) return
    const block = this.dragging
    block.element.classList.remove("rc-dragging")
    this.dragging = null
    this.say(`${block.label()} block moved to position ${this.blocks.indexOf(block) + 1}.`)
  }

  showFlagged() {
    for (const flagged of this.root.querySelectorAll(".rc-flagged")) flagged.classList.remove("rc-flagged")
    const match = /^#block-(.+)$/.exec(window.location.hash)
    if (!match) return
    const block = this.blocks.find((item) => item.id === match[1])
    if (!block) return
    block.element.classList.add("rc-flagged")
    block.element.scrollIntoView({ block: "center" })
    const missing = block.element.querySelector(".rc-missing input")
    const first = missing || block.element.querySelector(".rc-body input:not([type=file]), .rc-body textarea")
    if (first) first.focus()
    else block.element.focus()
  }

  say(text) {
    this.live.textContent = text
  }

  sync() {
    this.value.value = JSON.stringify(this.blocks.map((block) => block.read()))
    this.empty.hidden = this.blocks.length > 0
    this.root.classList.toggle("rc-has-blocks", this.blocks.length > 0)
    this.root.dispatchEvent(new CustomEvent("composer:change", { bubbles: true }))
  }
}

for (const root of document.querySelectorAll("[data-composer]")) {
  root.composer = new Composer(root)
}

// Other boxes that take merge fields (a mailing's subject and preheader) get the
// menu too, with the fields that are words: nobody types the syntax.
const composer = document.querySelector("[data-composer]")?.composer
if (composer) {
  const words = composer.mergeFields.filter((item) => item.kind === "text")
  for (const input of document.querySelectorAll("input[data-merge-menu]")) {
    const target = { insert: (item, fallback) => insertIntoInput(input, item, fallback) }
    input.after(el("span", { className: "rally-composer rc-inline-merge" }, [mergeMenu(words, target)]))
  }
}
