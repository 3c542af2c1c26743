import { TwinError } from "../errors.ts";

/** `twin worker remote` cannot go on: the message names the host and what to do. */
export class RemoteWorkerError extends TwinError {}

/** The database refuses to make the worker's role (no CREATEROLE): the message names the grants a pre-made role needs. */
export class WorkerRoleError extends RemoteWorkerError {}
