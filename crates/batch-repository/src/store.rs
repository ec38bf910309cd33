//! [`SqlJobRepository`]: the [`JobRepository`] logic, written once over [`Backend`].

use async_trait::async_trait;
use batch_core::context::ExecutionContext;
use batch_core::error::RepositoryError;
use batch_core::job::key::job_key;
use batch_core::job::parameters::{JobParameter, JobParameters, ParameterValue};
use batch_core::job::{JobExecution, JobInstance};
use batch_core::launch::rules::{PriorExecution, check_prior_executions, stale_exit_message};
use batch_core::repository::{ExecutionFilter, JobRepository, JobSummary, LaunchRequest};
use batch_core::status::{BatchStatus, ExitStatus};
use batch_core::step::item::ChunkTransaction;
use batch_core::step::{StepCounters, StepExecution};
use batch_core::time::now;

use crate::SpringBatchVersion;
use crate::sql::{Arg, Backend, Row, Tx, db};

/// Spring Batch's limit on SHORT_CONTEXT: longer contexts also go to SERIALIZED_CONTEXT.
const SHORT_CONTEXT_LENGTH: usize = 2500;

const JOB_EXECUTION_COLUMNS: &str = "E.JOB_EXECUTION_ID, E.VERSION, E.STATUS, E.EXIT_CODE, E.EXIT_MESSAGE, \
     E.CREATE_TIME, E.START_TIME, E.END_TIME, E.LAST_UPDATED, \
     I.JOB_INSTANCE_ID, I.VERSION, I.JOB_NAME, I.JOB_KEY \
     FROM BATCH_JOB_EXECUTION E JOIN BATCH_JOB_INSTANCE I ON E.JOB_INSTANCE_ID = I.JOB_INSTANCE_ID";

const STEP_EXECUTION_COLUMNS: &str = "S.STEP_EXECUTION_ID, S.VERSION, S.JOB_EXECUTION_ID, S.STEP_NAME, \
     S.STATUS, S.EXIT_CODE, S.EXIT_MESSAGE, S.COMMIT_COUNT, S.READ_COUNT, S.FILTER_COUNT, \
     S.WRITE_COUNT, S.ROLLBACK_COUNT, S.READ_SKIP_COUNT, S.PROCESS_SKIP_COUNT, S.WRITE_SKIP_COUNT, \
     S.CREATE_TIME, S.START_TIME, S.END_TIME, S.LAST_UPDATED, C.SHORT_CONTEXT, C.SERIALIZED_CONTEXT \
     FROM BATCH_STEP_EXECUTION S \
     LEFT JOIN BATCH_STEP_EXECUTION_CONTEXT C ON C.STEP_EXECUTION_ID = S.STEP_EXECUTION_ID";

const RUNNING: &str = "('STARTING', 'STARTED', 'STOPPING')";

/// A Spring Batch-compatible job repository on a SQL database.
pub(crate) struct SqlJobRepository<B> {
    backend: B,
    version: SpringBatchVersion,
}

impl<B: Backend> SqlJobRepository<B> {
    pub(crate) fn new(backend: B, version: SpringBatchVersion) -> Self {
        SqlJobRepository { backend, version }
    }

    /// The database backend.
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    async fn begin(&self) -> Result<Box<dyn Tx>, RepositoryError> {
        self.backend.begin().await.map_err(db)
    }

    async fn begin_read(&self) -> Result<Box<dyn Tx>, RepositoryError> {
        self.backend.begin_read().await.map_err(db)
    }

    /// Finds the instance for (name, key), creating it if absent, and locks it.
    async fn lock_instance(
        &self,
        tx: &mut dyn Tx,
        job_name: &str,
        key: &str,
    ) -> Result<JobInstance, RepositoryError> {
        let select = format!(
            "SELECT JOB_INSTANCE_ID, VERSION FROM BATCH_JOB_INSTANCE WHERE JOB_NAME = $1 AND JOB_KEY = $2{}",
            B::LOCK_ROWS
        );
        let args = || vec![Arg::from(job_name), Arg::from(key)];
        let mut rows = tx.query(&select, args()).await.map_err(db)?;
        if rows.is_empty() {
            let id = tx
                .next_id(self.version.job_instance_sequence())
                .await
                .map_err(db)?;
            tx.execute(
                "INSERT INTO BATCH_JOB_INSTANCE (JOB_INSTANCE_ID, JOB_NAME, JOB_KEY, VERSION) \
                 VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                vec![id.into(), job_name.into(), key.into()],
            )
            .await
            .map_err(db)?;
            rows = tx.query(&select, args()).await.map_err(db)?;
        }
        let row = rows.first().ok_or_else(|| {
            RepositoryError::Corrupt(format!("job instance {job_name}/{key} vanished"))
        })?;
        Ok(JobInstance {
            id: row.i64(0)?,
            version: row.i64(1)?,
            job_name: job_name.to_string(),
            job_key: key.to_string(),
        })
    }

    /// Marks a running execution whose launcher died FAILED, with its running steps.
    async fn fail_stale(
        &self,
        tx: &mut dyn Tx,
        execution: &PriorExecution,
        message: String,
    ) -> Result<(), RepositoryError> {
        let time = now();
        tracing::warn!(execution_id = execution.id, "{message}");
        for table_and_filter in [
            "BATCH_JOB_EXECUTION SET VERSION = VERSION + 1, STATUS = 'FAILED', EXIT_CODE = 'FAILED', \
             EXIT_MESSAGE = $1, END_TIME = $2, LAST_UPDATED = $2 WHERE JOB_EXECUTION_ID = $3",
            "BATCH_STEP_EXECUTION SET VERSION = VERSION + 1, STATUS = 'FAILED', EXIT_CODE = 'FAILED', \
             EXIT_MESSAGE = $1, END_TIME = $2, LAST_UPDATED = $2 WHERE JOB_EXECUTION_ID = $3 \
             AND STATUS IN ('STARTING', 'STARTED', 'STOPPING')",
        ] {
            tx.execute(
                &format!("UPDATE {table_and_filter}"),
                vec![message.clone().into(), time.into(), execution.id.into()],
            )
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    async fn read_context(
        tx: &mut dyn Tx,
        sql: &str,
        id: i64,
    ) -> Result<ExecutionContext, RepositoryError> {
        let rows = tx.query(sql, vec![id.into()]).await.map_err(db)?;
        match rows.first() {
            Some(row) => context_from_columns(row, 0),
            None => Ok(ExecutionContext::new()),
        }
    }

    async fn read_parameters(
        tx: &mut dyn Tx,
        execution_id: i64,
    ) -> Result<JobParameters, RepositoryError> {
        let rows = tx
            .query(
                "SELECT PARAMETER_NAME, PARAMETER_TYPE, PARAMETER_VALUE, IDENTIFYING \
                 FROM BATCH_JOB_EXECUTION_PARAMS WHERE JOB_EXECUTION_ID = $1",
                vec![execution_id.into()],
            )
            .await
            .map_err(db)?;
        let mut parameters = JobParameters::new();
        for row in rows {
            let value =
                ParameterValue::parse(&row.string(1)?, &row.string(2)?).map_err(|source| {
                    RepositoryError::BadParameter {
                        execution_id,
                        source,
                    }
                })?;
            let identifying = row.string(3)?.trim().eq_ignore_ascii_case("Y");
            parameters.insert(row.string(0)?, JobParameter { value, identifying });
        }
        Ok(parameters)
    }

    /// Reads executions selected by `where_clause` (over `E` and `I`) with their parameters and
    /// contexts.
    async fn read_executions(
        &self,
        tx: &mut dyn Tx,
        where_clause: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<JobExecution>, RepositoryError> {
        let sql = format!("SELECT {JOB_EXECUTION_COLUMNS} {where_clause}");
        let rows = tx.query(&sql, args).await.map_err(db)?;
        let mut executions = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.i64(0)?;
            let parameters = Self::read_parameters(tx, id).await?;
            let context = Self::read_context(
                tx,
                "SELECT SHORT_CONTEXT, SERIALIZED_CONTEXT FROM BATCH_JOB_EXECUTION_CONTEXT WHERE JOB_EXECUTION_ID = $1",
                id,
            )
            .await?;
            executions.push(JobExecution {
                id,
                version: row.i64(1)?,
                status: status_column(&row, 2)?,
                exit_status: ExitStatus {
                    code: row.string(3)?,
                    description: row.string(4)?,
                },
                create_time: row.time(5)?,
                start_time: row.opt_time(6)?,
                end_time: row.opt_time(7)?,
                last_updated: row.opt_time(8)?,
                instance: JobInstance {
                    id: row.i64(9)?,
                    version: row.i64(10)?,
                    job_name: row.string(11)?,
                    job_key: row.string(12)?,
                },
                parameters,
                context,
            });
        }
        Ok(executions)
    }

    async fn read_steps(
        tx: &mut dyn Tx,
        where_clause: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<StepExecution>, RepositoryError> {
        let sql = format!("SELECT {STEP_EXECUTION_COLUMNS} {where_clause}");
        let rows = tx.query(&sql, args).await.map_err(db)?;
        rows.iter().map(step_from_row).collect()
    }

    /// Reads the current status and version of a job execution.
    async fn job_status(
        tx: &mut dyn Tx,
        id: i64,
        lock: &str,
    ) -> Result<(BatchStatus, i64), RepositoryError> {
        let rows = tx
            .query(
                &format!(
                    "SELECT STATUS, VERSION FROM BATCH_JOB_EXECUTION WHERE JOB_EXECUTION_ID = $1{lock}"
                ),
                vec![id.into()],
            )
            .await
            .map_err(db)?;
        let row = rows.first().ok_or(RepositoryError::NoSuchExecution(id))?;
        Ok((status_column(row, 0)?, row.i64(1)?))
    }

    async fn write_job_execution(
        tx: &mut dyn Tx,
        execution: &JobExecution,
    ) -> Result<u64, RepositoryError> {
        tx.execute(
            "UPDATE BATCH_JOB_EXECUTION SET START_TIME = $1, END_TIME = $2, STATUS = $3, \
             EXIT_CODE = $4, EXIT_MESSAGE = $5, VERSION = VERSION + 1, CREATE_TIME = $6, \
             LAST_UPDATED = $7 WHERE JOB_EXECUTION_ID = $8 AND VERSION = $9",
            vec![
                execution.start_time.into(),
                execution.end_time.into(),
                execution.status.as_str().into(),
                execution.exit_status.code.clone().into(),
                execution.exit_status.truncated_description().into(),
                execution.create_time.into(),
                execution.last_updated.into(),
                execution.id.into(),
                execution.version.into(),
            ],
        )
        .await
        .map_err(db)
    }

    /// Updates the context row of a job or step execution.
    async fn write_context(
        tx: &mut dyn Tx,
        table: &str,
        id_column: &str,
        id: i64,
        context: &ExecutionContext,
    ) -> Result<(), RepositoryError> {
        let (short, serialized) = context_columns(context);
        tx.execute(
            &format!(
                "UPDATE {table} SET SHORT_CONTEXT = $1, SERIALIZED_CONTEXT = $2 WHERE {id_column} = $3"
            ),
            vec![short.into(), serialized.into(), id.into()],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Sets a job execution's status from an operator command, checking what it may change from.
    async fn set_status(
        &self,
        id: i64,
        allowed: &[BatchStatus],
        reason: &'static str,
        change: impl FnOnce(&mut JobExecution),
    ) -> Result<JobExecution, RepositoryError> {
        let mut tx = self.begin().await?;
        let (status, _) = Self::job_status(tx.as_mut(), id, B::LOCK_ROWS).await?;
        if !allowed.contains(&status) {
            return Err(RepositoryError::InvalidState { id, status, reason });
        }
        let mut execution = self
            .read_executions(
                tx.as_mut(),
                "WHERE E.JOB_EXECUTION_ID = $1",
                vec![id.into()],
            )
            .await?
            .pop()
            .ok_or(RepositoryError::NoSuchExecution(id))?;
        change(&mut execution);
        Self::write_job_execution(tx.as_mut(), &execution).await?;
        tx.commit().await.map_err(db)?;
        execution.version += 1;
        Ok(execution)
    }
}

#[async_trait]
impl<B: Backend> JobRepository for SqlJobRepository<B> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn create_job_execution(
        &self,
        request: &LaunchRequest<'_>,
    ) -> Result<JobExecution, RepositoryError> {
        let key = job_key(request.parameters, self.version.job_key_format());
        let mut tx = self.begin().await?;
        let instance = self
            .lock_instance(tx.as_mut(), request.job_name, &key)
            .await?;

        let rows = tx
            .query(
                "SELECT JOB_EXECUTION_ID, STATUS, CREATE_TIME, LAST_UPDATED FROM BATCH_JOB_EXECUTION \
                 WHERE JOB_INSTANCE_ID = $1 ORDER BY JOB_EXECUTION_ID DESC",
                vec![instance.id.into()],
            )
            .await
            .map_err(db)?;
        let prior = rows
            .iter()
            .map(|row| {
                Ok(PriorExecution {
                    id: row.i64(0)?,
                    status: status_column(row, 1)?,
                    create_time: row.time(2)?,
                    last_updated: row.opt_time(3)?,
                })
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        let time = now();
        let stale =
            check_prior_executions(request.job_name, instance.id, &prior, time, request.lease)?;
        for execution in prior.iter().filter(|e| stale.contains(&e.id)) {
            let message = stale_exit_message(execution, time, request.lease);
            self.fail_stale(tx.as_mut(), execution, message).await?;
        }
        let context = match prior.first() {
            Some(last) => {
                Self::read_context(
                    tx.as_mut(),
                    "SELECT SHORT_CONTEXT, SERIALIZED_CONTEXT FROM BATCH_JOB_EXECUTION_CONTEXT WHERE JOB_EXECUTION_ID = $1",
                    last.id,
                )
                .await?
            }
            None => ExecutionContext::new(),
        };

        let id = tx
            .next_id(self.version.job_execution_sequence())
            .await
            .map_err(db)?;
        tx.execute(
            "INSERT INTO BATCH_JOB_EXECUTION (JOB_EXECUTION_ID, JOB_INSTANCE_ID, CREATE_TIME, \
             START_TIME, END_TIME, STATUS, EXIT_CODE, EXIT_MESSAGE, VERSION, LAST_UPDATED) \
             VALUES ($1, $2, $3, NULL, NULL, 'STARTING', 'UNKNOWN', '', 0, $3)",
            vec![id.into(), instance.id.into(), time.into()],
        )
        .await
        .map_err(db)?;
        for (name, parameter) in request.parameters.iter() {
            tx.execute(
                "INSERT INTO BATCH_JOB_EXECUTION_PARAMS (JOB_EXECUTION_ID, PARAMETER_NAME, \
                 PARAMETER_TYPE, PARAMETER_VALUE, IDENTIFYING) VALUES ($1, $2, $3, $4, $5)",
                vec![
                    id.into(),
                    name.into(),
                    parameter.value.java_type().into(),
                    parameter.value.to_stored_string().into(),
                    if parameter.identifying { "Y" } else { "N" }.into(),
                ],
            )
            .await
            .map_err(db)?;
        }
        let (short, serialized) = context_columns(&context);
        tx.execute(
            "INSERT INTO BATCH_JOB_EXECUTION_CONTEXT (JOB_EXECUTION_ID, SHORT_CONTEXT, SERIALIZED_CONTEXT) \
             VALUES ($1, $2, $3)",
            vec![id.into(), short.into(), serialized.into()],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;

        Ok(JobExecution {
            id,
            version: 0,
            instance,
            parameters: request.parameters.clone(),
            status: BatchStatus::Starting,
            exit_status: ExitStatus::unknown(),
            create_time: time,
            start_time: None,
            end_time: None,
            last_updated: Some(time),
            context,
        })
    }

    async fn update_job_execution(
        &self,
        execution: &mut JobExecution,
    ) -> Result<(), RepositoryError> {
        let mut tx = self.begin().await?;
        if Self::write_job_execution(tx.as_mut(), execution).await? == 0 {
            let (stored, found) = Self::job_status(tx.as_mut(), execution.id, "").await?;
            if stored != BatchStatus::Stopping {
                return Err(RepositoryError::OptimisticLock {
                    entity: "job execution",
                    id: execution.id,
                    expected: execution.version,
                    found,
                });
            }
            // Another process requested a stop: adopt it, as Spring Batch's synchronizeStatus.
            execution.version = found;
            if execution.status.is_running() {
                execution.status = BatchStatus::Stopping;
            }
            Self::write_job_execution(tx.as_mut(), execution).await?;
        }
        tx.commit().await.map_err(db)?;
        execution.version += 1;
        Ok(())
    }

    async fn update_job_execution_context(
        &self,
        execution: &JobExecution,
    ) -> Result<(), RepositoryError> {
        let mut tx = self.begin().await?;
        Self::write_context(
            tx.as_mut(),
            "BATCH_JOB_EXECUTION_CONTEXT",
            "JOB_EXECUTION_ID",
            execution.id,
            &execution.context,
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    async fn heartbeat(&self, job_execution_id: i64) -> Result<BatchStatus, RepositoryError> {
        let mut tx = self.begin().await?;
        tx.execute(
            &format!(
                "UPDATE BATCH_JOB_EXECUTION SET LAST_UPDATED = $1 WHERE JOB_EXECUTION_ID = $2 AND STATUS IN {RUNNING}"
            ),
            vec![now().into(), job_execution_id.into()],
        )
        .await
        .map_err(db)?;
        let (status, _) = Self::job_status(tx.as_mut(), job_execution_id, "").await?;
        tx.commit().await.map_err(db)?;
        Ok(status)
    }

    async fn create_step_execution(
        &self,
        job_execution: &JobExecution,
        step_name: &str,
        context: ExecutionContext,
    ) -> Result<StepExecution, RepositoryError> {
        let mut tx = self.begin().await?;
        let id = tx
            .next_id(self.version.step_execution_sequence())
            .await
            .map_err(db)?;
        let time = now();
        tx.execute(
            "INSERT INTO BATCH_STEP_EXECUTION (STEP_EXECUTION_ID, VERSION, STEP_NAME, JOB_EXECUTION_ID, \
             CREATE_TIME, START_TIME, END_TIME, STATUS, COMMIT_COUNT, READ_COUNT, FILTER_COUNT, \
             WRITE_COUNT, EXIT_CODE, EXIT_MESSAGE, READ_SKIP_COUNT, WRITE_SKIP_COUNT, \
             PROCESS_SKIP_COUNT, ROLLBACK_COUNT, LAST_UPDATED) \
             VALUES ($1, 0, $2, $3, $4, NULL, NULL, 'STARTING', 0, 0, 0, 0, 'EXECUTING', '', 0, 0, 0, 0, $4)",
            vec![id.into(), step_name.into(), job_execution.id.into(), time.into()],
        )
        .await
        .map_err(db)?;
        let (short, serialized) = context_columns(&context);
        tx.execute(
            "INSERT INTO BATCH_STEP_EXECUTION_CONTEXT (STEP_EXECUTION_ID, SHORT_CONTEXT, SERIALIZED_CONTEXT) \
             VALUES ($1, $2, $3)",
            vec![id.into(), short.into(), serialized.into()],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(StepExecution {
            id,
            version: 0,
            job_execution_id: job_execution.id,
            step_name: step_name.to_string(),
            status: BatchStatus::Starting,
            exit_status: ExitStatus::executing(),
            counters: StepCounters::default(),
            create_time: time,
            start_time: None,
            end_time: None,
            last_updated: Some(time),
            context,
        })
    }

    async fn update_step_execution(&self, step: &mut StepExecution) -> Result<(), RepositoryError> {
        let mut tx = self.begin().await?;
        write_step_execution(tx.as_mut(), step).await?;
        tx.commit().await.map_err(db)?;
        step.version += 1;
        Ok(())
    }

    async fn begin_chunk(&self) -> Result<Box<dyn ChunkTransaction>, RepositoryError> {
        Ok(Box::new(SqlChunk {
            tx: self.backend.begin_chunk().await.map_err(db)?,
        }))
    }

    async fn last_step_execution(
        &self,
        job_instance_id: i64,
        step_name: &str,
    ) -> Result<Option<StepExecution>, RepositoryError> {
        let mut tx = self.begin_read().await?;
        let mut steps = Self::read_steps(
            tx.as_mut(),
            "JOIN BATCH_JOB_EXECUTION E ON E.JOB_EXECUTION_ID = S.JOB_EXECUTION_ID \
             WHERE E.JOB_INSTANCE_ID = $1 AND S.STEP_NAME = $2 \
             ORDER BY S.CREATE_TIME DESC, S.STEP_EXECUTION_ID DESC LIMIT 1",
            vec![job_instance_id.into(), step_name.into()],
        )
        .await?;
        Ok(steps.pop())
    }

    async fn job_summaries(&self) -> Result<Vec<JobSummary>, RepositoryError> {
        let mut tx = self.begin_read().await?;
        let rows = tx
            .query(
                "SELECT I.JOB_NAME, COUNT(DISTINCT I.JOB_INSTANCE_ID), COUNT(E.JOB_EXECUTION_ID), \
                 MAX(E.JOB_EXECUTION_ID) FROM BATCH_JOB_INSTANCE I \
                 LEFT JOIN BATCH_JOB_EXECUTION E ON E.JOB_INSTANCE_ID = I.JOB_INSTANCE_ID \
                 GROUP BY I.JOB_NAME ORDER BY I.JOB_NAME",
                vec![],
            )
            .await
            .map_err(db)?;
        let mut summaries = Vec::with_capacity(rows.len());
        for row in rows {
            let last_execution = match row.opt_i64(3)? {
                Some(id) => {
                    let last = tx
                        .query(
                            "SELECT STATUS, START_TIME FROM BATCH_JOB_EXECUTION WHERE JOB_EXECUTION_ID = $1",
                            vec![id.into()],
                        )
                        .await
                        .map_err(db)?;
                    match last.first() {
                        Some(last) => Some((id, status_column(last, 0)?, last.opt_time(1)?)),
                        None => None,
                    }
                }
                None => None,
            };
            summaries.push(JobSummary {
                job_name: row.string(0)?,
                instance_count: row.i64(1)?,
                execution_count: row.i64(2)?,
                last_execution,
            });
        }
        Ok(summaries)
    }

    async fn find_job_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<JobExecution>, RepositoryError> {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        if let Some(job_name) = &filter.job_name {
            args.push(Arg::from(job_name.as_str()));
            conditions.push(format!("I.JOB_NAME = ${}", args.len()));
        }
        if let Some(status) = filter.status {
            args.push(Arg::from(status.as_str()));
            conditions.push(format!("E.STATUS = ${}", args.len()));
        }
        let mut clause = String::new();
        if !conditions.is_empty() {
            clause = format!("WHERE {}", conditions.join(" AND "));
        }
        clause.push_str(" ORDER BY E.JOB_EXECUTION_ID DESC");
        if let Some(limit) = filter.limit {
            args.push(Arg::from(i64::from(limit)));
            clause.push_str(&format!(" LIMIT ${}", args.len()));
        }
        let mut tx = self.begin_read().await?;
        self.read_executions(tx.as_mut(), &clause, args).await
    }

    async fn job_execution(&self, id: i64) -> Result<Option<JobExecution>, RepositoryError> {
        let mut tx = self.begin_read().await?;
        Ok(self
            .read_executions(
                tx.as_mut(),
                "WHERE E.JOB_EXECUTION_ID = $1",
                vec![id.into()],
            )
            .await?
            .pop())
    }

    async fn last_job_execution(
        &self,
        job_name: &str,
    ) -> Result<Option<JobExecution>, RepositoryError> {
        let mut tx = self.begin_read().await?;
        Ok(self
            .read_executions(
                tx.as_mut(),
                "WHERE I.JOB_NAME = $1 ORDER BY I.JOB_INSTANCE_ID DESC, E.JOB_EXECUTION_ID DESC LIMIT 1",
                vec![job_name.into()],
            )
            .await?
            .pop())
    }

    async fn step_executions(
        &self,
        job_execution_id: i64,
    ) -> Result<Vec<StepExecution>, RepositoryError> {
        let mut tx = self.begin_read().await?;
        Self::read_steps(
            tx.as_mut(),
            "WHERE S.JOB_EXECUTION_ID = $1 ORDER BY S.STEP_EXECUTION_ID",
            vec![job_execution_id.into()],
        )
        .await
    }

    async fn request_stop(&self, job_execution_id: i64) -> Result<JobExecution, RepositoryError> {
        self.set_status(
            job_execution_id,
            &[BatchStatus::Starting, BatchStatus::Started],
            "only a STARTING or STARTED execution can be stopped",
            |execution| execution.status = BatchStatus::Stopping,
        )
        .await
    }

    async fn abandon(&self, job_execution_id: i64) -> Result<JobExecution, RepositoryError> {
        self.set_status(
            job_execution_id,
            &[
                BatchStatus::Stopping,
                BatchStatus::Stopped,
                BatchStatus::Failed,
                BatchStatus::Unknown,
            ],
            "only a STOPPING, STOPPED, FAILED or UNKNOWN execution can be abandoned (stop a running one first)",
            |execution| {
                execution.status = BatchStatus::Abandoned;
                execution.end_time.get_or_insert_with(now);
            },
        )
        .await
    }
}

/// A chunk's transaction: the writer's rows and the step's progress commit together.
struct SqlChunk {
    tx: Box<dyn Tx>,
}

#[async_trait]
impl ChunkTransaction for SqlChunk {
    fn connection(&mut self) -> &mut (dyn std::any::Any + Send) {
        self.tx.connection()
    }

    async fn commit(mut self: Box<Self>, step: &mut StepExecution) -> Result<(), RepositoryError> {
        write_step_execution(self.tx.as_mut(), step).await?;
        self.tx.commit().await.map_err(db)?;
        step.version += 1;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), RepositoryError> {
        self.tx.rollback().await.map_err(db)
    }
}

/// Writes a step execution's row and context (VERSION + 1) inside `tx`.
pub(crate) async fn write_step_execution(
    tx: &mut dyn Tx,
    step: &StepExecution,
) -> Result<(), RepositoryError> {
    let counters = &step.counters;
    let changed = tx
        .execute(
            "UPDATE BATCH_STEP_EXECUTION SET START_TIME = $1, END_TIME = $2, STATUS = $3, \
             COMMIT_COUNT = $4, READ_COUNT = $5, FILTER_COUNT = $6, WRITE_COUNT = $7, \
             EXIT_CODE = $8, EXIT_MESSAGE = $9, VERSION = VERSION + 1, READ_SKIP_COUNT = $10, \
             PROCESS_SKIP_COUNT = $11, WRITE_SKIP_COUNT = $12, ROLLBACK_COUNT = $13, \
             LAST_UPDATED = $14 WHERE STEP_EXECUTION_ID = $15 AND VERSION = $16",
            vec![
                step.start_time.into(),
                step.end_time.into(),
                step.status.as_str().into(),
                counters.commit.into(),
                counters.read.into(),
                counters.filter.into(),
                counters.write.into(),
                step.exit_status.code.clone().into(),
                step.exit_status.truncated_description().into(),
                counters.read_skip.into(),
                counters.process_skip.into(),
                counters.write_skip.into(),
                counters.rollback.into(),
                step.last_updated.into(),
                step.id.into(),
                step.version.into(),
            ],
        )
        .await
        .map_err(db)?;
    if changed == 0 {
        let rows = tx
            .query(
                "SELECT VERSION FROM BATCH_STEP_EXECUTION WHERE STEP_EXECUTION_ID = $1",
                vec![step.id.into()],
            )
            .await
            .map_err(db)?;
        return Err(RepositoryError::OptimisticLock {
            entity: "step execution",
            id: step.id,
            expected: step.version,
            found: rows
                .first()
                .map(|row| row.i64(0))
                .transpose()?
                .unwrap_or(-1),
        });
    }
    let (short, serialized) = context_columns(&step.context);
    tx.execute(
        "UPDATE BATCH_STEP_EXECUTION_CONTEXT SET SHORT_CONTEXT = $1, SERIALIZED_CONTEXT = $2 \
         WHERE STEP_EXECUTION_ID = $3",
        vec![short.into(), serialized.into(), step.id.into()],
    )
    .await
    .map_err(db)?;
    Ok(())
}

fn status_column(row: &Row, index: usize) -> Result<BatchStatus, RepositoryError> {
    row.string(index)?
        .parse()
        .map_err(|error: batch_core::status::UnknownStatus| {
            RepositoryError::Corrupt(error.to_string())
        })
}

fn step_from_row(row: &Row) -> Result<StepExecution, RepositoryError> {
    Ok(StepExecution {
        id: row.i64(0)?,
        version: row.i64(1)?,
        job_execution_id: row.i64(2)?,
        step_name: row.string(3)?,
        status: status_column(row, 4)?,
        exit_status: ExitStatus {
            code: row.string(5)?,
            description: row.string(6)?,
        },
        counters: StepCounters {
            commit: row.i64(7)?,
            read: row.i64(8)?,
            filter: row.i64(9)?,
            write: row.i64(10)?,
            rollback: row.i64(11)?,
            read_skip: row.i64(12)?,
            process_skip: row.i64(13)?,
            write_skip: row.i64(14)?,
        },
        create_time: row.time(15)?,
        start_time: row.opt_time(16)?,
        end_time: row.opt_time(17)?,
        last_updated: row.opt_time(18)?,
        context: context_from_columns(row, 19)?,
    })
}

/// SHORT_CONTEXT and SERIALIZED_CONTEXT as Spring Batch writes them.
fn context_columns(context: &ExecutionContext) -> (String, Option<String>) {
    let json = context.to_json();
    if json.chars().count() > SHORT_CONTEXT_LENGTH {
        let short = batch_core::status::truncate_chars(&json, SHORT_CONTEXT_LENGTH - 8);
        (format!("{short} ..."), Some(json))
    } else {
        (json, None)
    }
}

/// Reads a context from SHORT_CONTEXT (at `index`) and SERIALIZED_CONTEXT (at `index + 1`).
fn context_from_columns(row: &Row, index: usize) -> Result<ExecutionContext, RepositoryError> {
    let text = match row.opt_string(index + 1)? {
        Some(serialized) => serialized,
        None => match row.opt_string(index)? {
            Some(short) => short,
            None => return Ok(ExecutionContext::new()),
        },
    };
    Ok(ExecutionContext::from_json(&text)?)
}
