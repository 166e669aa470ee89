"""The local stack: real Kafka, Cassandra and Redis processes in one run folder.

Modules, by concept:

* ``errors``      the exception tree every command reports
* ``java``, ``jars``  a JDK 17, and the server jars from Maven Central
* ``configs``     config files rendered as text (pure)
* ``layout``      the run folder
* ``procs``, ``ports``, ``probes``  processes, ports, readiness requests
* ``server`` and ``kafka_server``, ``cassandra_server``, ``redis_server``  one class per server
* ``control``     up / down / status
* ``provision``   topics, keyspace and tables (`stack init`)
* ``bench``       `stumpcast bench stack`

Nothing runs at import; the CLI (``stumpcast.commands.stack``) calls in.
"""
