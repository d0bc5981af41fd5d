/**
 * Errors Node's HTTP parser raises before any route runs (headers over its 16 KiB, a malformed
 * request line, a request that never finishes arriving) answered in the documented error body,
 * not in Fastify's own shape, so that no client ever sees an undocumented answer.
 */
import type { Duplex } from "node:stream";

export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, reason, error, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", "headers-too-large", "the request's headers are over 16 KiB"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "request-timeout", "the request took too long to arrive"]
        : [400, "Bad Request", "bad-request", "the request could not be parsed as HTTP/1.1"];
  const body = JSON.stringify({ error, message });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
