"""geeteventbus's counter aggregator example, running on eventbus.compat, with exact totals.

Thirty producer threads post counter updates (events with topics ``c1`` to
``c4`` and a random count) for 20 seconds, or for the number of seconds given
on the command line; one aggregator, registered for the four topics, adds them
up and prints the change of each counter every 2 seconds.

The code is the ancestor's README example, copied verbatim except for the import
lines and ``sleep(RUN_SECONDS)`` in place of ``sleep(20)``. The check at the
bottom is new: after ``ebus.shutdown()`` (which, unlike the ancestor's, delivers
every queued event) it prints what the aggregator counted after its last report
and compares the bus's statistics: every posted event was processed exactly
once, so the printed changes plus that remainder are exactly what the producers
posted.
"""

# The ancestor's code is kept as it was written, so neither `ruff format` nor the
# lint rules for modern code apply to it:
# fmt: off
# ruff: noqa: UP031, ANN001, ANN201, ANN204
import sys
from random import randint
from threading import Lock, Thread
from time import sleep, time

from eventbus.compat import event, eventbus, subscriber

# Added for eventbus: the ancestor ran for 20 seconds; `python ancestor_counters.py 3` runs for 3.
RUN_SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 20


class counter_aggregator(subscriber, Thread):
    '''
    Aggregator for a set of counters. Multiple threads updates the counts which
    are aggregated by this class and output the aggregated value periodically.
    '''
    def __init__(self, counter_names):
        Thread.__init__(self)
        self.counter_names = counter_names
        self.locks = {}
        self.counts = {}
        self.keep_running = True
        self.collect_times = {}
        for counter in counter_names:
            self.locks[counter] = Lock()
            self.counts[counter] = 0
            self.collect_times[counter] = time()

    def process(self, eobj):
        '''
        Process method calls with the event object eobj. eobj has the counter name as the topic
        and an int count as the value for the counter.
        '''
        counter_name = eobj.get_topic()
        if counter_name not in self.counter_names:
            return
        count = eobj.get_data()
        with self.locks[counter_name]:
            self.counts[counter_name] += count

    def stop(self):
        self.keep_running = False

    def __call__(self):
        '''
        Keep outputing the aggregated counts every 2 seconds
        '''
        while self.keep_running:
            sleep(2)
            for counter_name in self.counter_names:
                with self.locks[counter_name]:
                    print('Change for counter %s = %d, in last %f secs' % (counter_name,
                          self.counts[counter_name], time() - self.collect_times[counter_name]))
                    self.counts[counter_name] = 0
                    self.collect_times[counter_name] = time()
        print('Aggregator exited')


class count_producer:
    '''
    Producer for counters. Every 0.02 seconds post the "updated" value for a
    counter randomly
    '''
    def __init__(self, counters, ebus):
        self.counters = counters
        self.ebus = ebus
        self.keep_running = True
        self.num_counter = len(counters)

    def stop(self):
        self.keep_running = False

    def __call__(self):
        while self.keep_running:
            ev = event(self.counters[randint(0, self.num_counter - 1)], randint(1, 100))
            ebus.post(ev)
            sleep(0.02)
        print('producer exited')

if __name__ == '__main__':
    ebus = eventbus()
    counters = ['c1', 'c2', 'c3', 'c4']
    subcr = counter_aggregator(counters)
    producer = count_producer(counters, ebus)
    for counter in counters:
        ebus.register_consumer(subcr, counter)
    threads = []
    i = 30
    while i > 0:
        threads.append(Thread(target=producer))
        i -= 1

    aggregator_thread = Thread(target=subcr)
    aggregator_thread.start()
    for thrd in threads:
        thrd.start()
    sleep(RUN_SECONDS)
    producer.stop()
    subcr.stop()
    sleep(2)
    ebus.shutdown()
# fmt: on


# ---- Added for eventbus (not in the ancestor's README): check that nothing was lost. ----
if __name__ == "__main__":
    aggregator_thread.join()  # it reports one last time when it notices stop(), then exits
    leftover = ", ".join(f"{name} = {subcr.counts[name]}" for name in counters)
    print(f"Counted after the aggregator's last report: {leftover}")
    stats = ebus.bus.stats()
    print(f"Events posted: {stats.posted}, processed: {stats.delivered}, failed: {stats.failed}, left: {stats.queued}")
    if (stats.delivered, stats.failed, stats.queued) != (stats.posted, 0, 0):
        sys.exit("Some events were not processed: the totals are wrong.")
    print("Every posted event was processed exactly once: the totals are exact.")
