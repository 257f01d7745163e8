// Type declarations of procpool-worker.

/** A job as its handler sees it. */
export class Job {
  /** The job id: 64 bits, so a BigInt. */
  readonly id: bigint;
  readonly jobType: string;
  /** The request's timeoutMs (0: none). */
  readonly timeoutMs: number;
  /** Date.now() at which the timeout elapses, or undefined. */
  readonly deadline: number | undefined;
  /** Aborted on cancel, deadline, shutdown grace expiry and host exit; its reason is a ProcpoolError. */
  readonly signal: AbortSignal;
  /** True once the job should stop; also true once the deadline has passed, timer or not. */
  readonly aborted: boolean;
  /** 1 for the first run, more when the host runs the job again after a failure. */
  readonly attempt: number;
  /** The caller's W3C trace context ('' when the host sent none). */
  readonly traceparent: string;
  readonly tracestate: string;
  /** The host asked for partial results: send() may be called. */
  readonly streaming: boolean;
  /** Throws the abort reason once the job should stop, the deadline included: call it between steps of a loop that never yields. */
  throwIfAborted(): void;
  /** The trace context as headers, a carrier for a propagator's extract(). */
  traceHeaders(): { traceparent?: string; tracestate?: string };
  /** Sends a partial result (bytes, or a value in a VALUE handler); waits while the host's window is used up. */
  send(chunk: any): Promise<void>;
}

/** An error whose code reaches the caller's *RemoteError. */
export class ProcpoolError extends Error {
  constructor(code: string, message?: string);
  code: string;
}

export class ProtocolError extends Error {}

export type Bytes = Uint8Array | ArrayBuffer | string | null | undefined;

export class Worker {
  constructor(opts?: { maxFrame?: number; drainTimeout?: number });
  handle(jobType: string, fn: (payload: Buffer, job: Job) => Bytes | Promise<Bytes>): this;
  handleValue(jobType: string, fn: (value: any, job: Job) => any): this;
  readonly jobTypes: string[];
  serve(opts?: { inFd?: number; outFd?: number }): Promise<number>;
  run(opts?: { inFd?: number; outFd?: number }): void;
}

export class ThreadPool {
  constructor(filename: string, opts?: { threads?: number });
  run<T = any>(name: string, arg?: any, opts?: { signal?: AbortSignal; transferList?: any[] }): Promise<T>;
  close(): Promise<void>;
}

export const Code: {
  readonly HANDLER: 'handler'; readonly PANIC: 'panic'; readonly CANCELLED: 'cancelled'; readonly DEADLINE: 'deadline';
  readonly UNKNOWN_JOB_TYPE: 'unknown_job_type'; readonly BAD_PAYLOAD: 'bad_payload'; readonly TOO_LARGE: 'too_large';
  readonly SHUTTING_DOWN: 'shutting_down';
};
export const VERSION: 1;
export const EXIT_OK: 0;
export const EXIT_ERROR: 1;
export const EXIT_PANIC: 70;
export function decodeValue(bytes: Uint8Array): any;
export function encodeValue(value: any): Uint8Array;
