/**
 * Peak resident memory of this process and all its descendants (Chromium and its renderers),
 * sampled from /proc. RSS double-counts pages shared between processes, so the sum overstates
 * the true footprint; it is the figure `ps` users compare, and the same method for both crawlers.
 */
import { readdirSync, readFileSync } from "node:fs";

export type RssSampler = {
  peakMb(): number;
  /**
   * CPU time (user + system) of the tree since the sampler started, in ms: each process's last
   * sample, so one that exited loses at most its last interval (a lower bound).
   */
  cpuMs(): number;
  stop(): number;
};

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** Samples every `intervalMs` until stop(); stop() returns the peak in MB (MiB). */
export function sampleTreeRss(intervalMs = 500, root = process.pid): RssSampler {
  let peak = 0;
  const startTicks = new Map<number, number>();
  const lastTicks = new Map<number, number>();
  let first = true;
  const tick = (): void => {
    const { rss: total, ticks } = treeStats(root);
    if (total > peak) peak = total;
    for (const [pid, t] of ticks) {
      if (first) startTicks.set(pid, t);
      lastTicks.set(pid, t);
    }
    first = false;
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  const mb = () => peak / 1024 / 1024;
  const cpuMs = () => {
    let ticks = 0;
    for (const [pid, t] of lastTicks) ticks += t - (startTicks.get(pid) ?? 0);
    return (ticks * 1000) / TICKS_PER_SECOND;
  };
  return {
    peakMb: mb,
    cpuMs,
    stop() {
      clearInterval(timer);
      tick();
      return mb();
    },
  };
}

/** RSS bytes of the tree, and CPU ticks (utime + stime) of each process in it. */
function treeStats(root: number): { rss: number; ticks: Map<number, number> } {
  const children = new Map<number, number[]>();
  const rss = new Map<number, number>();
  const cpu = new Map<number, number>();
  const pageSize = 4096;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const pid = Number(name);
      const ppid = Number(fields[1]);
      rss.set(pid, Number(fields[21]) * pageSize); // field 24 of stat: rss in pages
      cpu.set(pid, Number(fields[11]) + Number(fields[12])); // fields 14 and 15: utime, stime
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    } catch {
      // The process exited between readdir and read.
    }
  }
  let total = 0;
  const ticks = new Map<number, number>();
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    total += rss.get(pid) ?? 0;
    ticks.set(pid, cpu.get(pid) ?? 0);
    stack.push(...(children.get(pid) ?? []));
  }
  return { rss: total, ticks };
}

/**
 * Counts Chromium renderer processes started while it runs (a new pid whose command line says
 * `--type=renderer`), polling /proc every `intervalMs`; a renderer that lives shorter than that
 * can be missed, so the count is a lower bound. stop() returns the count.
 */
export function countRendererLaunches(intervalMs = 20): { stop(): number } {
  const seen = new Set<string>();
  const renderers = new Set<string>();
  const pids = () => readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  for (const pid of pids()) seen.add(pid); // already running: not launched during the count
  const tick = (): void => {
    for (const pid of pids()) {
      if (seen.has(pid)) continue;
      seen.add(pid);
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("--type=renderer")) renderers.add(pid);
      } catch {
        // The process exited between readdir and read.
      }
    }
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      tick();
      return renderers.size;
    },
  };
}
