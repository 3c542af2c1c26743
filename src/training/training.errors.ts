import { TwinError } from "../errors.ts";

/** A run's stored file (checkpoint, adapter, chart data) is missing or unreadable. */
export class StoredFileError extends TwinError {}

/** No dataset was built yet: the caller may offer to build one first. */
export class NothingToTrainError extends TwinError {}

/** The training plan cannot be made: a bad config, an unknown key, a dataset too small. */
export class TrainPlanError extends TwinError {}

/** The trainer's Python environment is missing or broken. */
export class TrainerSetupError extends TwinError {}

/** No dataset was built yet: the caller may offer to build one first. */
export class NoDatasetError extends NothingToTrainError {}

/** A run ended failed: its reason, the last lines of its log, and where the whole log is. */
export class RunFailedError extends TwinError {}

/** The local trainer worker exited on its own with an error before its runs were done. */
export class TrainerWorkerError extends TwinError {}

/** A run id that is not in the queue. */
export class NoSuchRunError extends TwinError {}
