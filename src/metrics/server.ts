import {
  createServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { Server } from "node:net";
import { ExecgateError } from "../core/errors.js";
import { listenUnix } from "../server/listen.js";
import { CONTENT_TYPE } from "./exposition.js";

/** A scrape is a few kilobytes; more concurrent scrapers than this is a misconfiguration. */
export const METRICS_MAX_CONNECTIONS = 8;
const METRICS_TIMEOUT_MS = 5000;

export type MetricsListen =
  | { readonly socket: string; readonly mode: number }
  /** Always bound to 127.0.0.1: the metrics say nothing secret, but nothing for the network either. */
  | { readonly port: number };

export interface MetricsServer {
  /** `unix:/path` or `127.0.0.1:port` (the port the kernel chose when 0 was asked). */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (HEAD too) in the Prometheus text format on a Unix socket or a localhost
 * port, separate from the executors' socket: scraping never competes with token requests for
 * connections, and the metrics socket can have its own group. Anything else is 404/405.
 */
export async function startMetricsServer(
  listen: MetricsListen,
  render: () => string,
): Promise<MetricsServer> {
  const http = createServer(
    { requestTimeout: METRICS_TIMEOUT_MS, headersTimeout: METRICS_TIMEOUT_MS, keepAliveTimeout: 1000 },
    (req, res) => answer(req, res, render),
  );
  http.maxConnections = METRICS_MAX_CONNECTIONS;
  http.on("clientError", (_e, socket) => socket.destroy());

  if ("socket" in listen) {
    // Bound with the same care as the executors' socket (never unlinks a non-socket), then
    // each accepted connection is handed to the HTTP server.
    const net: Server = await listenUnix(listen.socket, {
      mode: listen.mode,
      onConnection: (s) => {
        http.emit("connection", s);
        s.resume();
      },
    });
    net.maxConnections = METRICS_MAX_CONNECTIONS;
    return {
      address: `unix:${listen.socket}`,
      close: () => closeBoth(net, http),
    };
  }

  await new Promise<void>((resolve, reject) => {
    http.once("error", (e) =>
      reject(
        new ExecgateError("io_error", `cannot listen on 127.0.0.1:${listen.port} for metrics: ${e.message}`),
      ),
    );
    http.listen(listen.port, "127.0.0.1", () => resolve());
  });
  const addr = http.address();
  const port = addr !== null && typeof addr === "object" ? addr.port : listen.port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}

function answer(req: IncomingMessage, res: ServerResponse, render: () => string): void {
  const path = (req.url ?? "").split("?")[0];
  if (path !== "/metrics") {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
    return;
  }
  let body: string;
  try {
    body = render();
  } catch (e) {
    res
      .writeHead(500, { "content-type": "text/plain" })
      .end(`metrics unavailable: ${(e as Error).message}\n`);
    return;
  }
  res.writeHead(200, { "content-type": CONTENT_TYPE, "content-length": Buffer.byteLength(body) });
  res.end(req.method === "HEAD" ? undefined : body);
}

function closeBoth(net: Server, http: HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    net.close(() => resolve());
    http.closeAllConnections();
  });
}
