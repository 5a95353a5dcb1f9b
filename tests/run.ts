// `deno task test`: every test of the project, against the local stack, in one command.
//
// Brings the stack up (installing what is missing), then runs in turn: deno lint and
// fmt, the pgTAP suite (pg_prove), the Deno tests, plpgsql_check through `supabase db
// lint`, and Supabase's advisors. Each step runs even if an earlier one failed, so one run shows everything;
// the exit code is non-zero if any step failed.

import { CLI_DB_URL, DENO_BIN, REPO_ROOT, SUPABASE_BIN } from "../local/config.ts";
import { stackEnv } from "../local/env.ts";
import { start } from "../local/cli.ts";

interface Step {
  name: string;
  cmd: string;
  args: string[];
}

// What runs outside `deno test` (which type-checks the tests and what they import).
const ENTRY_POINTS = [
  "functions/backfill-scheduler/index.ts",
  "functions/backfill-worker/index.ts",
  "local/cli.ts",
  "local/gateway.ts",
  "local/pg_net_worker.ts",
  "local/demo.ts",
  "bench/run.ts",
  "tests/run.ts",
].join(" ");

// The project's own schemas: pgTAP's functions in `extensions` are not ours to lint.
const LINTED_SCHEMAS = "public,backfill_internal";

const steps: Step[] = [
  {
    name: "deno lint, fmt --check and check (type-check of every entry point)",
    cmd: "bash",
    args: [
      "-c",
      `"${DENO_BIN}" lint && "${DENO_BIN}" fmt --check && "${DENO_BIN}" check ${ENTRY_POINTS}`,
    ],
  },
  {
    name: "pgTAP (supabase/tests)",
    cmd: "bash",
    args: ["-c", "pg_prove --failures --ext .sql -r supabase/tests"],
  },
  {
    name: "Deno tests (tests/)",
    cmd: DENO_BIN,
    // The slow group below has its own throwaway stack and runs as its own step.
    args: [
      "test",
      "-A",
      "--no-prompt",
      "--ignore=tests/faults,tests/hostile",
      ...Deno.args,
      "tests/",
    ],
  },
  {
    // Faults injected into a throwaway stack (/tmp/backfill-faults, ports +300: postgres and
    // PgBouncer restarted, processes killed) and hostile input against it; never the main
    // stack. tests/faults/_stack.ts starts it; the step after this one stops it.
    name: "fault and hostile-input tests (tests/faults, tests/hostile; own stack)",
    cmd: DENO_BIN,
    args: ["test", "-A", "--no-prompt", ...Deno.args, "tests/faults/", "tests/hostile/"],
  },
  {
    name: "stop the fault tests' stack",
    cmd: "bash",
    args: [
      "-c",
      `[ -n "$FAULT_STACK_KEEP" ] || BACKFILL_STACK_DIR=/tmp/backfill-faults BACKFILL_PORT_OFFSET=300 ${DENO_BIN} run -A local/cli.ts stop`,
    ],
  },
  {
    name: "supabase db lint (plpgsql_check)",
    cmd: SUPABASE_BIN,
    args: ["db", "lint", "--db-url", CLI_DB_URL, "--schema", LINTED_SCHEMAS, "--fail-on", "error"],
  },
  {
    name: "supabase db advisors",
    cmd: SUPABASE_BIN,
    args: [
      "db",
      "advisors",
      "--db-url",
      CLI_DB_URL,
      "--type",
      "all",
      "--level",
      "warn",
      "--fail-on",
      "warn",
    ],
  },
];

async function runStep(step: Step): Promise<boolean> {
  console.log(`\n=== ${step.name}`);
  const t0 = performance.now();
  const { code } = await new Deno.Command(step.cmd, {
    args: step.args,
    cwd: REPO_ROOT,
    env: stackEnv(),
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `=== ${step.name}: ${code === 0 ? "passed" : `FAILED (exit ${code})`} in ${seconds}s`,
  );
  return code === 0;
}

await start();
const results: [string, boolean][] = [];
for (const step of steps) results.push([step.name, await runStep(step)]);

console.log("\n=== summary");
for (const [name, ok] of results) console.log(`${ok ? "ok    " : "FAILED"}  ${name}`);
Deno.exit(results.every(([, ok]) => ok) ? 0 : 1);
