/**
 * Which declared faces the page's text selects. For each run (text with its computed font), the
 * family list is walked per character: a family with @font-face rules picks the faces whose
 * descriptors CSS font matching chooses (font-snapper) and, among those, the last declared face
 * whose unicode-range holds the character; a character no such face covers falls to the next
 * family. A generic family ends the walk (a system font draws it); a named family with no face
 * before a web font depends on what the machine has installed, which static reading cannot know.
 */
import { createRequire } from "node:module";
import type { FaceRule } from "./css-read.ts";
import { parseUnicodeRange } from "./css-values.ts";
import { descriptors } from "./extract-fonts.ts";
import type { TextRun } from "./static-cascade.ts";
import { Escalate, type Slicer } from "./static-limits.ts";

type SnapProps = { "font-family": string; "font-weight": string; "font-style": string; "font-stretch": string };
/** font-snapper copies the faces it is given: the index says which group it chose. */
type SnapFace = SnapProps & { index: number };
const snap = createRequire(import.meta.url)("font-snapper") as (
  faces: SnapFace[],
  props: SnapProps,
) => SnapFace | undefined;

type Group = { key: string; faces: Array<{ face: FaceRule; spans: Array<[number, number]> }>; snap: SnapFace };
type Family = { groups: Group[] };

export async function usedFaces(faces: FaceRule[], runs: TextRun[], slicer: Slicer): Promise<Set<FaceRule>> {
  const families = byFamily(faces);
  const used = new Set<FaceRule>();
  // Runs that ask for the same font are matched once, over the union of their characters.
  const merged = new Map<string, { run: TextRun; chars: Set<number> }>();
  for (const run of runs) {
    if (!run.families.some((f) => families.has(f.name.toLowerCase()))) continue;
    if (run.text === null) throw new Escalate(`generated text of ${run.where} cannot be read statically`, "content");
    const key = JSON.stringify([run.families, run.weight, run.style, run.stretch]);
    const entry = merged.get(key) ?? { run, chars: new Set<number>() };
    for (const ch of run.text) entry.chars.add(ch.codePointAt(0)!);
    merged.set(key, entry);
  }
  for (const { run, chars } of merged.values()) {
    await slicer.tick();
    const picked = run.families.map((f) => (f.generic ? null : pickGroup(families.get(f.name.toLowerCase()), run)));
    for (const cp of chars) {
      for (let i = 0; i < run.families.length; i++) {
        const family = run.families[i]!;
        if (family.generic) break;
        const group = picked[i];
        if (group === undefined) {
          if (picked.slice(i + 1).some((g) => g !== undefined && g !== null))
            throw new Escalate(`"${family.name}" may be a local font ahead of a web font (${run.where})`, "local-font");
          break;
        }
        const face = group?.faces.findLast((f) => f.spans.some(([lo, hi]) => cp >= lo && cp <= hi));
        if (face) {
          used.add(face.face);
          break;
        }
      }
    }
  }
  return used;
}

/** Faces grouped by family (case-insensitive) and then by descriptors: one group is one segmented face. */
function byFamily(faces: FaceRule[]): Map<string, Family> {
  const out = new Map<string, Family>();
  for (const face of faces) {
    const d = descriptors(face);
    if (d.family === "") continue;
    const family = out.get(d.family.toLowerCase()) ?? { groups: [] };
    out.set(d.family.toLowerCase(), family);
    const stretch = face.stretch.trim().toLowerCase() || "normal";
    const key = `${d.weight}|${d.style}|${stretch}`;
    let group = family.groups.find((g) => g.key === key);
    if (!group) {
      const index = family.groups.length;
      const snapFace = {
        "font-family": "f",
        "font-weight": d.weight,
        "font-style": d.style,
        "font-stretch": stretch,
        index,
      };
      group = { key, faces: [], snap: snapFace };
      family.groups.push(group);
    }
    group.faces.push({ face, spans: parseUnicodeRange(face.unicodeRange) });
  }
  return out;
}

/** undefined: no face of that name; null: none selectable. */
function pickGroup(family: Family | undefined, run: TextRun): Group | null | undefined {
  if (!family) return undefined;
  const props = {
    "font-family": "f",
    "font-weight": String(run.weight),
    "font-style": run.style,
    "font-stretch": `${run.stretch}%`,
  };
  const chosen = snap(
    family.groups.map((g) => g.snap),
    props,
  );
  return chosen === undefined ? null : (family.groups[chosen.index] ?? null);
}
