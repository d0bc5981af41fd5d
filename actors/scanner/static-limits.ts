/**
 * Bounds of the static fast path against hostile input. Every parse of untrusted HTML and CSS is
 * capped in size and depth and cut into slices that give the event loop back, so a page can
 * neither freeze the node (other scans, heartbeats, SIGTERM) nor outrun the fast path's budget:
 * past any cap the page escalates to the browser, whose own guards apply.
 */

/** Thrown when the fast path cannot answer; `rule` names what fired, `script` the script's URL or `inline`. */
export class Escalate extends Error {
  override name = "Escalate";
  readonly rule: string;
  readonly script: string | undefined;
  constructor(message: string, rule = "static", script?: string) {
    super(message);
    this.rule = rule;
    this.script = script;
  }
}

export const LIMITS = {
  /** Landing HTML; pages larger than this are rare and the browser has its own response cap. */
  htmlBytes: 4 * 1024 * 1024,
  /** Blink stops nesting at 512 (kMaximumHTMLParserDOMTreeDepth); htmlparser2's open-element stack is quadratic in depth. */
  domDepth: 512,
  /** Elements whose style is computed; a page past this is handed to the browser rather than matched slowly. */
  elements: 30_000,
  /** One stylesheet (Tabler's full CSS is 0.74 MB). */
  cssBytes: 2 * 1024 * 1024,
  /** All stylesheets of a page together. */
  cssTotalBytes: 8 * 1024 * 1024,
  /** Stylesheets fetched (links and @import chains). */
  sheets: 40,
  /** @import nesting. */
  importDepth: 5,
  /** Style rules that set a font-related property, across the page; each is matched against the DOM. */
  fontRules: 20_000,
  /** Rules of one stylesheet before pruning (Bootstrap 5 has about 6,000). */
  sheetRules: 20_000,
  /** One font, display or content value; real ones are a line (a custom property is checked where it is used). */
  fontValueChars: 4_096,
  /** Open blocks, parentheses and brackets at once (calc() in var() in a nested rule is under 20). */
  cssBracketDepth: 64,
  /** Nested at-rules and CSS nesting inside a rule. */
  cssNesting: 32,
  /** Font files downloaded. */
  fonts: 40,
  /** Scripts triaged; more is a page that is better rendered. */
  scripts: 60,
  /** One script's content read for triage; a larger bundle escalates unread. */
  scriptBytes: 1024 * 1024,
  /** Tokens of one CSS statement (selector, declaration): far above real rules; long hostile runs parse slowly. */
  cssStatementTokens: 10_000,
  /** One top-level rule or block, parsed in one synchronous call. */
  cssChunkChars: 512 * 1024,
  /** var() substitutions followed for one value (cycles and chains). */
  varDepth: 16,
} as const;

/** Slice sizes: each synchronous parse step handles at most this much input before yielding. */
export const HTML_CHUNK_CHARS = 64 * 1024;
export const CSS_CHUNK_CHARS = 16 * 1024;
/** CSS text tokenized per step when finding where to cut. */
export const CSS_TOKEN_WINDOW = 16 * 1024;
/** Work in one stretch before giving the event loop back (well under the 200 ms a node tolerates). */
const SLICE_MS = 30;

/**
 * Cooperative time slicing with a deadline: `tick()` yields to the event loop once SLICE_MS of
 * synchronous work has passed, and escalates once the fast path's budget is spent.
 */
export class Slicer {
  readonly deadline: number;
  #sliceStart = performance.now();
  constructor(deadline: number) {
    this.deadline = deadline;
  }
  async tick(): Promise<void> {
    if (performance.now() - this.#sliceStart < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#sliceStart = performance.now();
    if (Date.now() > this.deadline) throw new Escalate("the static budget ran out", "budget");
  }
}
