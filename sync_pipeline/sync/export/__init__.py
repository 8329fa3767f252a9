"""The write half of a sync: one exporter per direction, run document by document by `runner`.

`to_metakocka.MetakockaExporter.run` and `to_crm.CrmExporter.run` each carry one document through
the protections of `docs/exactly-once.md`, in order; `runner` owns the thread pool, the progress
reports and the circuit breaker. Kept free of imports so that reading `outcomes` stays cheap.
"""
