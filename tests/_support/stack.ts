// The local stack as the HTTP tests see it, and small helpers for serving and watching
// handlers in-process.
//
// API_URL, FUNCTIONS_URL and the keys come from the environment that tests/run.ts (or
// `deno task local status -o env`, exported) provides; a test that needs one and does not
// find it fails with a message saying how to get it, rather than with `undefined` in a URL.

export interface StackEnv {
  apiUrl: string;
  functionsUrl: string;
  anonKey: string;
  publishableKey: string;
  serviceRoleKey: string;
  secretKey: string;
}

const NAMES = {
  apiUrl: "API_URL",
  functionsUrl: "FUNCTIONS_URL",
  anonKey: "ANON_KEY",
  publishableKey: "PUBLISHABLE_KEY",
  serviceRoleKey: "SERVICE_ROLE_KEY",
  secretKey: "SECRET_KEY",
} as const satisfies Record<keyof StackEnv, string>;

/** True when the stack's URLs and keys are in the environment. */
export function hasStack(): boolean {
  return Object.values(NAMES).every((name) => !!Deno.env.get(name));
}

/** The stack's URLs and keys; throws, naming what is missing, when they are not set. */
export function stack(): StackEnv {
  const missing = Object.values(NAMES).filter((name) => !Deno.env.get(name));
  if (missing.length) {
    throw new Error(
      `${missing.join(", ")} not set: run the tests with \`deno task test\`, or export the ` +
        "lines of `deno task local status -o env` (start the stack with `deno task local start`)",
    );
  }
  const env = {} as StackEnv;
  for (const [field, name] of Object.entries(NAMES)) {
    env[field as keyof StackEnv] = Deno.env.get(name)!.replace(/\/$/, "");
  }
  return env;
}

export interface Served {
  url: string;
  port: number;
  /** Stops listening and waits for the server to finish. */
  close(): Promise<void>;
}

/** Serves `handler` on 127.0.0.1 at a port the system picks. */
export function serve(handler: (req: Request) => Response | Promise<Response>): Served {
  const stop = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: () => {} },
    handler,
  );
  const port = server.addr.port;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close() {
      closed ??= (stop.abort(), server.finished);
      return closed;
    },
  };
}

/** A port nothing listens on (it was free a moment ago): connections to it are refused. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export interface CapturedLogs {
  /** Every line logged so far, as printed. */
  lines: string[];
  /** The lines that are JSON objects (the functions' log events), parsed. */
  events(): Record<string, unknown>[];
  /** Puts console.log back. */
  restore(): void;
}

/** Captures console.log lines (the functions log one JSON line per event) until restore(). */
export function captureLogs(): CapturedLogs {
  const original = console.log;
  const lines: string[] = [];
  console.log = (...args: unknown[]) => {
    lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
  };
  return {
    lines,
    events() {
      return lines.flatMap((line) => {
        try {
          const parsed = JSON.parse(line);
          return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? [parsed] : [];
        } catch {
          return [];
        }
      });
    },
    restore() {
      console.log = original;
    },
  };
}

/** Runs `fn` with console.log captured, and returns its result with the lines logged. */
export async function withLogs<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; logs: CapturedLogs }> {
  const logs = captureLogs();
  try {
    return { result: await fn(), logs };
  } finally {
    logs.restore();
  }
}

/** POSTs JSON (or a raw string) and returns the status, headers and parsed JSON body. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string | undefined> = {},
  method = "POST",
): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(url, {
    method,
    headers: Object.fromEntries(
      Object.entries({ "content-type": "application/json", ...headers })
        .filter((e): e is [string, string] => e[1] !== undefined),
    ),
    body: method === "GET" || method === "HEAD"
      ? undefined
      : typeof body === "string"
      ? body
      : body === undefined
      ? undefined
      : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: the raw text is returned
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  { timeoutMs = 30_000, everyMs = 200 } = {},
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
