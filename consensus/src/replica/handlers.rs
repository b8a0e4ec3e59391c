//! The replica's event handlers: the protocol rules of chained 2-chain HotStuff (Jolteon), the
//! pacemaker, and catch-up. Safety-critical signing is delegated to `safety.rs`.

use super::*;

/// Why the replica entered a new round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Qc,
    Tc,
}

impl Replica {
    /// Builds a replica from its configuration, the committee, its vote key and what survived a
    /// restart. Nothing is sent until the first [`Replica::handle`].
    pub fn new(
        cfg: Config,
        committee: Committee,
        key: SigningKey,
        recovery: Recovery,
    ) -> Result<Replica, ConfigError> {
        cfg.validate(&committee)?;
        let root = recovery
            .committed
            .as_ref()
            .map(|c| c.block.clone())
            .unwrap_or_else(Block::genesis);
        #[cfg(feature = "sim-bugs")]
        let recovery = Recovery {
            safety: recovery
                .safety
                .filter(|_| !crate::sim_bugs::active(crate::sim_bugs::FORGET_SAFETY_ON_RESTART)),
            ..recovery
        };
        let safety = SafetyRules::new(cfg.me, key, recovery.safety);
        let mut tree = BlockTree::new(root.clone());
        for b in &safety.data().blocks {
            if b.height() > root.height() && !tree.is_full() {
                tree.insert(b.clone());
            }
        }
        let mut high_qc = safety.data().high_qc.clone();
        let mut commit_qc = None;
        if let Some(c) = &recovery.committed {
            if c.proof.qc.round() > high_qc.round() {
                high_qc = c.proof.qc.clone();
            }
            if c.proof.qc.data.parent_id != root.id() {
                commit_qc = Some(c.proof.qc.clone());
            }
        }
        let high_tc = safety.data().high_tc.clone();
        let round = high_qc
            .round()
            .max(high_tc.as_ref().map(|t| t.round).unwrap_or_default())
            .next();
        // After a restart we may already have proposed in the round we voted in; proposing again
        // there would look like equivocation, so the first proposal is for a later round.
        let proposed_in = safety.data().last_voted_round;
        let history = History::recovered(&committee, &recovery.history, &root);
        let stats = Stats {
            round,
            leader: leader_for(&committee, &history, round).leader,
            committed_height: root.height(),
            high_qc_round: high_qc.round(),
            ..Stats::default()
        };
        Ok(Replica {
            cfg,
            committee,
            safety,
            tree,
            high_qc,
            high_tc,
            commit_qc,
            round,
            proposed_in,
            timed_out: false,
            votes: PendingVotes::default(),
            timeouts: PendingTimeouts::default(),
            buffered: Vec::new(),
            missing: BTreeMap::new(),
            persist_seq: 0,
            held: Vec::new(),
            round_deadline: None,
            timer_set: None,
            consecutive_timeouts: 0,
            now: TimeMs(0),
            stats,
            out: Vec::new(),
            fresh_commits: Vec::new(),
            proposals_seen: BTreeMap::new(),
            history,
        })
    }

    /// The one entry point: handles `event` at time `now` and returns what the driver must do,
    /// in execution order.
    pub fn handle(&mut self, now: TimeMs, event: Event, app: &mut dyn Application) -> Vec<Action> {
        self.now = self.now.max(now);
        self.stats.events_handled += 1;
        self.fresh_commits.clear();
        match event {
            Event::Tick => {}
            Event::PayloadReady => self.maybe_propose(app),
            Event::TimerFired => self.on_timer(app),
            Event::Persisted { seq } => self.on_persisted(seq, app),
            Event::Message(v) => {
                let (from, m) = v.into_parts();
                self.on_message(from, m, app);
            }
            Event::Unverified { from, message } => {
                match message.verify(&self.committee, from, self.cfg.payload_bytes_max) {
                    Ok(v) => {
                        let (from, m) = v.into_parts();
                        self.on_message(from, m, app);
                    }
                    Err(e) => self.reject(Reject::Invalid(e)),
                }
            }
        }
        self.fetch_missing();
        self.refresh_timer(app);
        self.stats.round = self.round;
        self.stats.leader = self.leader(self.round).leader;
        self.stats.committed_height = self.tree.root().height();
        self.stats.high_qc_round = self.high_qc.round();
        let mut out = std::mem::take(&mut self.out);
        out.sort_by_key(Action::order);
        out
    }

    /// Counters for export.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The current round.
    pub fn round(&self) -> Round {
        self.round
    }

    /// The last committed block.
    pub fn committed(&self) -> &Block {
        self.tree.root()
    }

    /// The leader of `round` as this replica sees it (see [`leader_for`]): the one function
    /// behind proposing, vote routing and the check of a proposal's author.
    pub fn leader(&self, round: Round) -> LeaderChoice {
        leader_for(&self.committee, &self.history, round)
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The safety record as it stands in memory (the durable one may be older).
    pub fn safety_data(&self) -> &SafetyData {
        self.safety.data()
    }

    fn reject(&mut self, r: Reject) {
        *self.stats.rejected.entry(r.kind()).or_default() += 1;
    }

    fn on_message(&mut self, from: ReplicaId, m: Message, app: &mut dyn Application) {
        match m {
            Message::Proposal(p) => self.on_proposal(from, p.block, app),
            Message::Vote(v) => self.on_vote(&v, app),
            Message::Timeout(t) => self.on_timeout(t, app),
            Message::SyncInfo(i) => self.process_certificates(&i.high_qc, i.high_tc.as_ref(), app),
            Message::BlockRequest(r) => {
                let count = (r.count as usize).min(FETCH_BLOCKS_MAX);
                let blocks = self.tree.ancestry(&r.block_id, count);
                if !blocks.is_empty() {
                    self.send(from, Message::BlockResponse(BlockResponse { blocks }));
                }
            }
            Message::BlockResponse(r) => {
                for b in r.blocks {
                    self.process_certificates(&b.qc, b.tc.as_ref(), app);
                    self.add_block(b, from, false, app);
                }
            }
            Message::SyncRequest(r) => {
                if r.from <= self.tree.root().height() {
                    let count = (r.count as usize).min(SYNC_BLOCKS_MAX) as u32;
                    self.out.push(Action::ServeSync {
                        to: from,
                        request: SyncRequest {
                            from: r.from,
                            count,
                        },
                    });
                }
            }
            Message::SyncResponse(r) => self.on_sync(from, r, app),
        }
    }

    fn send(&mut self, to: ReplicaId, message: Message) {
        self.out.push(Action::Send { to, message });
    }

    // ----- certificates and rounds -------------------------------------------------------

    fn process_certificates(
        &mut self,
        qc: &QuorumCert,
        tc: Option<&TimeoutCert>,
        app: &mut dyn Application,
    ) {
        self.process_qc(qc, app);
        if let Some(tc) = tc {
            self.process_tc(tc, app);
        }
    }

    /// A verified QC: raise the high QC, note a direct commit, fetch the certified block if it
    /// is missing, and advance the round (Jolteon: a QC of round r moves everyone to r + 1).
    fn process_qc(&mut self, qc: &QuorumCert, app: &mut dyn Application) {
        self.safety.observe_qc(qc);
        if qc.round() > self.high_qc.round() {
            self.high_qc = qc.clone();
        }
        let root_height = self.tree.root().height();
        let d = &qc.data;
        #[cfg(feature = "sim-bugs")]
        let one_chain = crate::sim_bugs::active(crate::sim_bugs::COMMIT_ON_ONE_CHAIN);
        #[cfg(not(feature = "sim-bugs"))]
        let one_chain = false;
        let commits = if one_chain {
            d.round.0 > 0 && d.height > root_height
        } else {
            d.commits_parent() && d.height > root_height.next()
        };
        if commits
            && self
                .commit_qc
                .as_ref()
                .is_none_or(|c| c.round() < qc.round())
        {
            self.commit_qc = Some(qc.clone());
        }
        if d.height > root_height && !self.tree.contains(&d.block_id) {
            self.note_missing(d.block_id, d.height, qc.signers().collect());
        }
        if qc.round().next() > self.round {
            self.enter_round(qc.round().next(), Reason::Qc, app);
        }
        self.try_commit(app);
    }

    fn process_tc(&mut self, tc: &TimeoutCert, app: &mut dyn Application) {
        self.safety.observe_tc(tc);
        if self.high_tc.as_ref().is_none_or(|t| t.round < tc.round) {
            self.high_tc = Some(tc.clone());
        }
        if tc.round.next() > self.round {
            self.enter_round(tc.round.next(), Reason::Tc, app);
        }
    }

    fn enter_round(&mut self, round: Round, reason: Reason, app: &mut dyn Application) {
        assert!(round > self.round, "liveness: rounds only increase");
        self.round = round;
        match reason {
            Reason::Qc => {
                self.stats.round_changes_qc += 1;
                self.consecutive_timeouts = 0;
            }
            Reason::Tc => self.stats.round_changes_tc += 1,
        }
        self.timed_out = false;
        self.round_deadline = None;
        self.votes.prune_below(Round(round.0.saturating_sub(1)));
        self.timeouts.prune_below(round);
        self.maybe_propose(app);
    }

    fn round_timeout_ms(&self) -> u64 {
        let shift = self.consecutive_timeouts.min(20);
        self.cfg
            .round_timeout_ms
            .saturating_mul(1u64 << shift)
            .min(self.cfg.round_timeout_ms_max)
    }

    /// Far-future messages are refused, so that a Byzantine replica cannot make us hold state
    /// for arbitrary rounds.
    fn check_window(&mut self, round: Round) -> bool {
        if round.0 > self.round.0.saturating_add(ROUND_AHEAD_MAX) {
            self.reject(Reject::FarFuture {
                round,
                current: self.round,
                max: ROUND_AHEAD_MAX,
            });
            return false;
        }
        true
    }

    // ----- proposals and blocks ----------------------------------------------------------

    fn on_proposal(&mut self, from: ReplicaId, block: Block, app: &mut dyn Application) {
        self.process_certificates(&block.qc, block.tc.as_ref(), app);
        if !self.check_window(block.round()) {
            return;
        }
        let (round, id) = (block.round(), block.id());
        // Checked after the block's certificates are processed: they may commit blocks that
        // make us certain of this round's leader. An uncertain replica accepts any member
        // (`leader_for` explains why that is safe and how it converges).
        let choice = self.leader(round);
        if choice.certain && block.header.author != choice.leader {
            self.reject(Reject::Invalid(crate::types::VerifyError::NotLeader {
                round,
                author: block.header.author,
                leader: choice.leader,
            }));
            return;
        }
        match self.proposals_seen.get(&round) {
            Some(first) if *first != id => {
                // Two signed proposals for one round: the leader equivocates. Its first block
                // keeps our vote (the safety rules refuse a second one anyway).
                *self
                    .stats
                    .equivocations
                    .entry(block.header.author)
                    .or_default() += 1;
            }
            Some(_) => {}
            None => {
                self.proposals_seen.insert(round, id);
                let floor = Round(self.round.0.saturating_sub(1));
                self.proposals_seen = self.proposals_seen.split_off(&floor);
            }
        }
        self.add_block(block, from, true, app);
    }

    /// Inserts a verified block if its parent is held (else buffers it and fetches the parent),
    /// votes for it if it is this round's proposal, and drains buffered children.
    fn add_block(
        &mut self,
        block: Block,
        from: ReplicaId,
        proposal: bool,
        app: &mut dyn Application,
    ) {
        let mut work = vec![(block, proposal, from)];
        while let Some((block, proposal, from)) = work.pop() {
            let id = block.id();
            if self.tree.contains(&id) {
                if proposal {
                    self.try_vote(&id, app);
                }
                continue;
            }
            let root = self.tree.root();
            if block.height() <= root.height() {
                if id == root.id() {
                    continue;
                }
                self.reject(Reject::Stale {
                    round: block.round(),
                    current: self.round,
                });
                continue;
            }
            let Some(parent) = self.tree.get(&block.header.parent_id) else {
                self.buffer(block, proposal, from);
                continue;
            };
            if block.header.timestamp <= parent.header.timestamp {
                self.reject(Reject::TimestampNotIncreasing {
                    timestamp: block.header.timestamp.0,
                    parent: parent.header.timestamp.0,
                });
                continue;
            }
            if self.tree.is_full() {
                self.reject(Reject::BufferFull {
                    what: "block tree",
                    max: crate::limits::TREE_BLOCKS_MAX,
                });
                continue;
            }
            self.missing.remove(&id);
            let inserted = self.tree.insert(block);
            assert!(inserted, "tree invariant: parent checked above");
            if proposal {
                self.try_vote(&id, app);
            }
            let mut i = 0;
            while i < self.buffered.len() {
                if self.buffered[i].0.header.parent_id == id {
                    let (b, p) = self.buffered.swap_remove(i);
                    work.push((b, p, from));
                } else {
                    i += 1;
                }
            }
        }
        self.try_commit(app);
        self.maybe_propose(app);
    }

    fn buffer(&mut self, block: Block, proposal: bool, from: ReplicaId) {
        let parent_height = Height(block.height().0 - 1);
        let mut peers: Vec<ReplicaId> = block.qc.signers().collect();
        peers.insert(0, from);
        self.note_missing(block.header.parent_id, parent_height, peers);
        if self.buffered.iter().any(|(b, _)| b.id() == block.id()) {
            return;
        }
        if self.buffered.len() >= BUFFERED_BLOCKS_MAX {
            self.reject(Reject::BufferFull {
                what: "buffered blocks",
                max: BUFFERED_BLOCKS_MAX,
            });
            return;
        }
        self.buffered.push((block, proposal));
    }

    /// Votes for the held block `id` if it is this round's proposal and every rule allows it:
    /// timestamp within our clock's drift bound, the application's consent, the safety rules.
    fn try_vote(&mut self, id: &BlockId, app: &mut dyn Application) {
        let Some(block) = self.tree.get(id) else {
            return;
        };
        if block.round() != self.round {
            return;
        }
        if block.header.timestamp > self.now.plus_ms(self.cfg.max_clock_drift_ms) {
            self.stats.clock_drift_refusals += 1;
            return;
        }
        let Some(mut chain) = self.tree.chain_to(&block.header.parent_id) else {
            return;
        };
        if !self.fresh_commits.is_empty() {
            chain.splice(0..0, self.fresh_commits.iter());
        }
        if !app.validate(block, &chain) {
            self.stats.vetoed_blocks += 1;
            return;
        }
        let block = block.clone();
        match self.safety.vote(&block) {
            Ok(Signed::New(v)) => {
                // Our own vote is in the QC the next proposal carries: no need to check it.
                self.committee
                    .remember_signed(v.voter, &v.data.signing_bytes(), &v.signature);
                let blocks = self
                    .tree
                    .chain_to(id)
                    .map(|c| c.into_iter().cloned().collect());
                self.safety.remember_blocks(blocks.unwrap_or_default());
                self.persist_then(Held::Vote(v));
                #[cfg(feature = "sim-bugs")]
                if crate::sim_bugs::active(crate::sim_bugs::VOTE_BEFORE_PERSIST) {
                    // The vote leaves now; the record that allows it is not written.
                    let seq = self.persist_seq;
                    self.out
                        .retain(|a| !matches!(a, Action::Persist { seq: s, .. } if *s == seq));
                    if let Some((_, h)) = self.held.pop() {
                        self.release(h, app);
                    }
                }
            }
            Ok(Signed::Repeat(v)) => self.release(Held::Vote(v), app),
            Err(_) => self.stats.not_safe += 1,
        }
    }

    /// Proposes if we lead the current round, have not proposed in it, hold the block of the
    /// highest QC, and either have payload or must extend a non-empty block so that it commits
    /// (and so that everyone learns of its commit). An idle leader proposes nothing.
    fn maybe_propose(&mut self, app: &mut dyn Application) {
        let round = self.round;
        if self.leader(round).leader != self.cfg.me || self.proposed_in >= round {
            return;
        }
        if !app.ready_to_propose() {
            return;
        }
        let tc = if self.high_qc.round().next() == round {
            None
        } else {
            match &self.high_tc {
                Some(tc)
                    if tc.round.next() == round
                        && self.high_qc.round() >= tc.highest_qc_round() =>
                {
                    Some(tc.clone())
                }
                _ => return,
            }
        };
        let parent_id = self.high_qc.data.block_id;
        let Some(parent) = self.tree.get(&parent_id) else {
            return;
        };
        let (parent_height, parent_round, parent_ts) =
            (parent.height(), parent.round(), parent.header.timestamp);
        let grandparent_nonempty = self
            .tree
            .get(&parent.header.parent_id)
            .is_some_and(|g| !g.is_empty());
        let Some(mut chain) = self.tree.chain_to(&parent_id) else {
            return;
        };
        let must_extend =
            tc.is_some() || grandparent_nonempty || chain.iter().any(|b| !b.is_empty());
        if !self.fresh_commits.is_empty() {
            chain.splice(0..0, self.fresh_commits.iter());
        }
        let mut payload = app.propose(&chain, self.cfg.payload_bytes_max);
        drop(chain);
        if payload.len() > self.cfg.payload_bytes_max {
            self.reject(Reject::Invalid(
                crate::types::VerifyError::PayloadTooLarge {
                    len: payload.len(),
                    max: self.cfg.payload_bytes_max,
                },
            ));
            payload.clear();
        }
        if payload.is_empty() && !must_extend {
            return;
        }
        let header = BlockHeader {
            round,
            height: parent_height.next(),
            parent_id,
            parent_round,
            timestamp: self.now.max(parent_ts.plus_ms(1)),
            author: self.cfg.me,
            payload_digest: payload_digest(&payload),
            payload_len: payload.len() as u32,
            parent_voters: self.high_qc.signers().collect(),
        };
        let block = Block {
            header,
            qc: self.high_qc.clone(),
            tc,
            payload,
        };
        self.proposed_in = round;
        let signature = self.safety.sign_proposal(&block);
        self.stats.proposals_sent += 1;
        self.out.push(Action::Broadcast {
            message: Message::Proposal(Proposal {
                block: block.clone(),
                signature,
            }),
        });
        let me = self.cfg.me;
        self.add_block(block, me, true, app);
    }

    // ----- votes, timeouts and the persist gate ------------------------------------------

    fn on_vote(&mut self, v: &Vote, app: &mut dyn Application) {
        if v.data.round.next() < self.round {
            self.reject(Reject::Stale {
                round: v.data.round,
                current: self.round,
            });
            return;
        }
        if !self.check_window(v.data.round) {
            return;
        }
        match self.votes.add(v, self.committee.quorum()) {
            VoteOutcome::QuorumFormed(qc) => self.process_qc(&qc, app),
            VoteOutcome::Equivocation { voter, .. } => {
                *self.stats.equivocations.entry(voter).or_default() += 1;
            }
            VoteOutcome::Full => self.reject(Reject::BufferFull {
                what: "pending votes",
                max: crate::limits::PENDING_VOTES_MAX,
            }),
            VoteOutcome::Added | VoteOutcome::Duplicate => {}
        }
    }

    fn on_timeout(&mut self, m: TimeoutMsg, app: &mut dyn Application) {
        self.process_certificates(&m.timeout.high_qc, m.high_tc.as_ref(), app);
        self.add_timeout(&m.timeout, app);
    }

    fn add_timeout(&mut self, t: &Timeout, app: &mut dyn Application) {
        if t.round < self.round {
            self.reject(Reject::Stale {
                round: t.round,
                current: self.round,
            });
            // The author is behind (it missed the certificate that moved us on, perhaps just
            // before the cluster went idle and stopped sending): hand it our certificates. Its
            // timeouts are paced by its timer, so these replies are too.
            if t.author != self.cfg.me {
                let info = SyncInfo {
                    high_qc: self.high_qc.clone(),
                    high_tc: self.high_tc.clone(),
                };
                self.send(t.author, Message::SyncInfo(info));
            }
            return;
        }
        if !self.check_window(t.round) {
            return;
        }
        match self.timeouts.add(t, self.committee.quorum()) {
            TimeoutOutcome::TcFormed(tc) => self.process_tc(&tc, app),
            TimeoutOutcome::Added { count } => {
                // f + 1 timeouts include an honest replica that gave up: join it, so that a
                // TC forms even if our own timer has not expired yet.
                if count >= self.committee.validity() && t.round == self.round && !self.timed_out {
                    self.local_timeout(app);
                }
            }
            TimeoutOutcome::Equivocation { author, .. } => {
                *self.stats.equivocations.entry(author).or_default() += 1;
            }
            TimeoutOutcome::Full => self.reject(Reject::BufferFull {
                what: "pending timeouts",
                max: crate::limits::PENDING_TIMEOUTS_MAX,
            }),
            TimeoutOutcome::Duplicate => {}
        }
    }

    fn on_timer(&mut self, app: &mut dyn Application) {
        if self.round_deadline.is_some_and(|d| self.now >= d) {
            self.local_timeout(app);
        }
    }

    fn local_timeout(&mut self, app: &mut dyn Application) {
        self.stats.local_timeouts += 1;
        if !self.timed_out {
            self.consecutive_timeouts = self.consecutive_timeouts.saturating_add(1);
        }
        self.timed_out = true;
        self.round_deadline = Some(self.now.plus_ms(self.round_timeout_ms()));
        match self.safety.timeout(self.round) {
            Ok(Signed::New(t)) => {
                if let Some(chain) = self.tree.chain_to(&self.high_qc.data.block_id) {
                    let blocks = chain.into_iter().cloned().collect();
                    self.safety.remember_blocks(blocks);
                }
                self.persist_then(Held::Timeout(t));
            }
            Ok(Signed::Repeat(t)) => self.release(Held::Timeout(t), app),
            Err(_) => self.stats.not_safe += 1,
        }
    }

    /// Emits the record and holds `h` until the driver confirms it durable.
    fn persist_then(&mut self, h: Held) {
        self.persist_seq += 1;
        self.out.push(Action::Persist {
            seq: self.persist_seq,
            record: self.safety.data().clone(),
        });
        if self.held.len() >= AWAITING_PERSIST_MAX {
            self.held.remove(0);
            self.reject(Reject::BufferFull {
                what: "awaiting persist",
                max: AWAITING_PERSIST_MAX,
            });
        }
        self.held.push((self.persist_seq, h));
    }

    fn on_persisted(&mut self, seq: u64, app: &mut dyn Application) {
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(s, _)| *s <= seq);
        self.held = rest;
        for (_, h) in ready {
            self.release(h, app);
        }
    }

    /// Sends a vote or timeout whose record is durable; our own copies are counted locally.
    fn release(&mut self, h: Held, app: &mut dyn Application) {
        match h {
            Held::Vote(v) => {
                // Every replica gets the vote, not only the next leader: each forms the QC
                // itself, so it enters the next round and commits the certified block's parent
                // as soon as the leader does, rather than one hop later when the next proposal comes
                // (or later still, when that leader holds its proposal for pacing). A replica
                // unsure who leads next needs this anyway, so that whoever the certain
                // replicas follow can form the QC.
                self.stats.votes_sent += 1;
                self.out.push(Action::Broadcast {
                    message: Message::Vote(v.clone()),
                });
                self.on_vote(&v, app);
            }
            Held::Timeout(t) => {
                self.out.push(Action::Broadcast {
                    message: Message::Timeout(TimeoutMsg {
                        timeout: t.clone(),
                        high_tc: self.high_tc.clone(),
                    }),
                });
                self.add_timeout(&t, app);
            }
        }
    }

    // ----- commit --------------------------------------------------------------------------

    /// The 2-chain commit rule: a QC on block `C` whose parent `D` has round `C.round - 1`
    /// commits `D` and all its ancestors. Commits are emitted oldest first, each once.
    fn try_commit(&mut self, app: &mut dyn Application) {
        let Some(qc) = self.commit_qc.clone() else {
            return;
        };
        #[cfg(feature = "sim-bugs")]
        let one_chain = crate::sim_bugs::active(crate::sim_bugs::COMMIT_ON_ONE_CHAIN);
        #[cfg(not(feature = "sim-bugs"))]
        let one_chain = false;
        let d = if one_chain {
            qc.data.block_id
        } else {
            qc.data.parent_id
        };
        let root_height = self.tree.root().height();
        let committed_height = if one_chain {
            qc.data.height
        } else {
            Height(qc.data.height.0.saturating_sub(1))
        };
        if committed_height <= root_height {
            self.commit_qc = None;
            return;
        }
        let Some(chain) = self.tree.chain_to(&d) else {
            return;
        };
        let headers: Vec<BlockHeader> = chain.iter().map(|b| b.header.clone()).collect();
        let committed = self.tree.commit_to(&d);
        assert_eq!(
            committed.len(),
            headers.len(),
            "agreement: commit the whole chain"
        );
        let mut expected = root_height.next();
        for (i, block) in committed.into_iter().enumerate() {
            assert_eq!(
                block.height(),
                expected,
                "agreement: commit heights are contiguous"
            );
            expected = expected.next();
            let proof = CommitProof {
                headers: headers[i + 1..].to_vec(),
                qc: qc.clone(),
            };
            self.stats.blocks_committed += 1;
            self.history.push(&self.committee, &block);
            self.fresh_commits.push(block.clone());
            self.out.push(Action::Commit { block, proof });
        }
        self.commit_qc = None;
        self.after_root_change(app);
    }

    fn after_root_change(&mut self, app: &mut dyn Application) {
        let root_height = self.tree.root().height();
        self.missing.retain(|_, m| m.height > root_height);
        self.buffered.retain(|(b, _)| b.height() > root_height);
        let root_id = self.tree.root().id();
        let ready: Vec<(Block, bool)> = {
            let (r, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.buffered)
                .into_iter()
                .partition(|(b, _)| b.header.parent_id == root_id);
            self.buffered = rest;
            r
        };
        let me = self.cfg.me;
        for (b, p) in ready {
            self.add_block(b, me, p, app);
        }
    }

    // ----- catch-up ------------------------------------------------------------------------

    fn note_missing(&mut self, id: BlockId, height: Height, peers: Vec<ReplicaId>) {
        if self.missing.contains_key(&id) || self.missing.len() >= MISSING_BLOCKS_MAX {
            return;
        }
        let me = self.cfg.me;
        let peers: Vec<ReplicaId> = peers.into_iter().filter(|p| *p != me).collect();
        if peers.is_empty() {
            return;
        }
        self.missing.insert(
            id,
            Missing {
                height,
                peers,
                next_try: self.now.plus_ms(self.cfg.fetch_delay_ms),
                attempts: 0,
            },
        );
    }

    /// Asks for missing blocks whose grace period passed: uncommitted ones by id from the
    /// replicas that certified them, and, when they are far ahead or a fetch already failed,
    /// committed blocks by height (sync).
    fn fetch_missing(&mut self) {
        let now = self.now;
        let root_height = self.tree.root().height();
        let mut requests = Vec::new();
        let mut sync_to = None;
        for (id, m) in self.missing.iter_mut() {
            if now < m.next_try {
                continue;
            }
            let peer = m.peers[m.attempts as usize % m.peers.len()];
            let far = m.height.0 > root_height.0 + FETCH_BLOCKS_MAX as u64;
            if far || m.attempts % 2 == 1 {
                sync_to.get_or_insert(peer);
            }
            if !far {
                requests.push((peer, *id));
            }
            m.attempts += 1;
            m.next_try = now.plus_ms(self.cfg.fetch_retry_ms);
        }
        for (peer, block_id) in requests {
            self.stats.fetch_requests += 1;
            self.send(
                peer,
                Message::BlockRequest(BlockRequest {
                    block_id,
                    count: FETCH_BLOCKS_MAX as u32,
                }),
            );
        }
        if let Some(peer) = sync_to {
            self.request_sync(peer);
        }
    }

    fn request_sync(&mut self, peer: ReplicaId) {
        self.stats.sync_requests += 1;
        let from = self.tree.root().height().next();
        self.send(
            peer,
            Message::SyncRequest(SyncRequest {
                from,
                count: SYNC_BLOCKS_MAX as u32,
            }),
        );
    }

    /// Jumps forward over verified committed blocks that extend our committed chain.
    fn on_sync(&mut self, from: ReplicaId, r: SyncResponse, app: &mut dyn Application) {
        let full = r.blocks.len() >= SYNC_BLOCKS_MAX;
        let mut advanced = false;
        let mut last_qc = None;
        for c in r.blocks {
            let root = self.tree.root();
            if c.block.height() <= root.height() {
                continue;
            }
            if c.block.height() != root.height().next() || c.block.header.parent_id != root.id() {
                self.reject(Reject::Conflicting {
                    height: c.block.height(),
                    committed: root.height(),
                });
                break;
            }
            let id = c.block.id();
            if self.tree.contains(&id) {
                self.tree.commit_to(&id);
            } else {
                self.tree.reset_root(c.block.clone());
            }
            self.stats.blocks_committed += 1;
            self.stats.blocks_synced += 1;
            last_qc = Some(c.proof.qc.clone());
            self.history.push(&self.committee, &c.block);
            self.fresh_commits.push(c.block.clone());
            self.out.push(Action::Commit {
                block: c.block,
                proof: c.proof,
            });
            advanced = true;
        }
        if advanced {
            if self
                .commit_qc
                .as_ref()
                .is_some_and(|q| q.data.height <= self.tree.root().height().next())
            {
                self.commit_qc = None;
            }
            self.after_root_change(app);
            if let Some(qc) = last_qc {
                self.process_qc(&qc, app);
            }
            if full {
                self.request_sync(from);
            }
        }
    }

    // ----- pacemaker timer -----------------------------------------------------------------

    /// Runs the round timer only while there is work: pending application payload, an
    /// uncommitted non-empty block, or a round we already gave up on. An idle cluster therefore
    /// never times out, and a round's timer starts when work appears, not when the round began.
    fn refresh_timer(&mut self, app: &mut dyn Application) {
        let has_work =
            self.timed_out || app.has_pending_work() || self.tree.has_nonempty_uncommitted();
        if !has_work {
            self.round_deadline = None;
        } else if self.round_deadline.is_none() {
            self.round_deadline = Some(self.now.plus_ms(self.round_timeout_ms()));
        }
        let fetch = self.missing.values().map(|m| m.next_try).min();
        let next = match (self.round_deadline, fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(deadline) = next {
            if self.timer_set != Some(deadline) {
                self.timer_set = Some(deadline);
                self.out.push(Action::SetTimer { deadline });
            }
        }
    }
}
