// The stack is an ordered list of services; start walks it forward, stop walks it backward.
// A new service (gateway, served functions, pg_net delivery worker) is one more entry.

export interface Service {
  name: string;
  /** Bring it up; only called when isUp() is false, and after every earlier service is up. */
  start(): Promise<void>;
  /** Running and answering, not merely a live pid. */
  isUp(): Promise<boolean>;
  /** Stop what start started, by pid; a no-op when not running. */
  stop(): Promise<void>;
  /** One line for `status`, e.g. the URL it answers on. */
  describe(): string;
}
