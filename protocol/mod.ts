export * from "./subjects.ts";
export * from "./messages.ts";
export * from "./decode.ts";
