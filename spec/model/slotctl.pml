/*
 * slotctl's A/B policy as a Promela model (spec/model/README.md).
 *
 * It formalizes spec/policy.md, spec/table.md ("Saving: the write order"),
 * spec/install.md and spec/rollback.md as the code implements them:
 *   Sources/SlotCore/Policy.swift        normalize, choose, consumeTry, markSuccessful,
 *                                        markUnbootable, setActive (with its re-ranking)
 *   Sources/SlotFlows/BootControl.swift  boot, mark-successful (table, then counter),
 *                                        mark-failed, set-active, change/saveIfChanged
 *   Sources/SlotFlows/TableStore.swift   load (which copy wins, stale backup), save
 *                                        (primary first, or backup first when the primary
 *                                        is the only good copy)
 *   Sources/SlotFlows/Install.swift      install: verify, refuse the running or an
 *                                        unconfirmed running slot, mark unbootable,
 *                                        copy, footer, read back, conditional activation
 *
 * One process is the device: power on runs `boot`; a running system runs the init
 * script (mark-successful on a healthy image, mark-failed on an unhealthy one), an
 * OTA client (`install`), an operator (`set-active` of a slot that is not running),
 * or reboots. A power cut may strike before and after every write (CUT): the disk
 * keeps what was written, /run (the booted record) is lost, and the device boots.
 *
 * Compile-time knobs:
 *   NS=2|3        slots                    MAXT   largest --tries used (default 2)
 *   MAXRI         largest rollback index    ATOMIC_RAISE  the counter moves in one write
 *                 of an installed image                   (file backend); default: one
 *                                                         NV_Increment per step (TPM)
 *   NOCUT         no power cuts             TRACE  print commands and states (for
 *                                                  spin -p/-n simulation and the replay)
 *   (in TRACE simulation a cut is taken with odds 1/16 at each point)
 *   MUT_RAISE_FIRST  deliberate bug: mark-successful raises the counter before it
 *                    writes the table (the order rollback.md calls unsafe)
 *   MUT_TIEBREAK     deliberate bug: a priority tie goes to the higher partition index
 *   MUT_NOTRY        deliberate bug: boot does not spend a try (the liveness check fails)
 *   NOASSERT         assertions off (the replay of a mutated model)
 */

#ifdef NOASSERT
/* The replay of a deliberately wrong model: let it run past its own assertions, so
   that the comparison with the real binary is what fails. */
#define assert(x) skip
#endif

#ifndef NS
#define NS 2
#endif
#ifndef MAXT
#define MAXT 2
#endif
#ifndef MAXRI
#define MAXRI 2
#endif
#ifndef MAXOPS
#define MAXOPS 200
#endif

#define NOSLOT NS

/* What a slot partition holds. */
#define IMG_NONE    0   /* no slotctl footer: `unsigned` (26) */
#define IMG_PARTIAL 1   /* an install was cut while copying: does not verify */
#define IMG_SIGNED  2   /* a signed image with rollback index ri[k] */

/* A slot's state packed as in its attribute bits (table.md): priority 4 bits,
   tries 4 bits, successful 1 bit. */
#define PR(x) ((x) & 15)
#define TR(x) (((x) >> 4) & 15)
#define SU(x) (((x) >> 8) & 1)
#define MK(p, t, s) ((p) | ((t) << 4) | ((s) << 8))
#define BOOTABLE(x) (PR(x) > 0 && (SU(x) == 1 || TR(x) > 0))
#define UNBOOTABLE 0

/* The boot verifier (SignedSlotVerifier): signature, digest, rollback index >= counter. */
#define VERIFIES(k) (img[k] == IMG_SIGNED && ri[k] >= ctr)
/* An image the device can run for good: verifies, and passes the health checks. */
#define GOODIMAGE(k) (VERIFIES(k) && healthy[k])

/* ---- the disk ---- */
/* Each GPT copy: its entry array (E) and the entries its header's CRC covers (H).
   A copy is valid iff E == H (a header is written whole: sector-atomic). */
short primE[NS]; short primH[NS];
short backE[NS]; short backH[NS];
byte img[NS]; byte ri[NS]; bit healthy[NS];
/* The rollback counter (one location: every image in the model uses location 0). */
byte ctr;

/* ---- volatile: /run/slotctl/booted ---- */
byte booted = NOSLOT;
byte claim;             /* the booted image's rollback index, as recorded at boot */

/* ---- bookkeeping for the properties (not state of the device) ---- */
bit incomplete[NS];     /* install has begun writing the slot's bytes and not activated it */
bit goodAtStart;        /* a boot began with a confirmed slot holding a verifying image */
bit trialEv;            /* this command booted a slot on trial (spent a try) */
bit activateEv;         /* this command activated a slot (set-active, install) */

/* ---- one command's working state (reset after every command) ---- */
short orig[NS];         /* the slots as loaded (table.slots) */
short cur[NS];          /* the slots being changed */
bit pvok; bit bvok;     /* primary / backup valid on its own */
bit srcPrimary;         /* the primary won the load */
bit bkValid;            /* the backup is valid and the same table as the primary */
bit needsRepair;
bit changed;
byte idx; byte excl; bit rejectedAny; bit consumed;
byte k; byte vk; byte lv; byte rank; int levels;
byte tgt; byte nri; bit nhealthy; byte ntries;
byte rc;
#ifdef TRACE
byte w;                 /* mutating system calls of this command so far (replay) */
byte ops;
#endif

#ifdef TRACE
#define W(n) w = w + n
#else
#define W(n) skip
#endif

#ifdef NOCUT
#define CUT skip
#else
#ifdef TRACE
/* In simulation: print where the cut strikes (after w mutating system calls). */
/* Four fair coins: a cut with odds 1/16 at each point (select() is not uniform in
   simulation). */
#define COIN if :: lv++ :: skip fi;
#define CUT lv = 0; COIN COIN COIN COIN if :: lv == 4 -> printf("CUT %d\n", w); lv = 0; goto powercut :: else -> lv = 0 fi
#else
#define CUT if :: printf("CUT\n"); goto powercut :: skip fi
#endif
#endif

/* Which copy is valid on its own. */
inline validity() {
	d_step {
		pvok = 1; bvok = 1; vk = 0;
		do
		:: vk < NS ->
			if :: primE[vk] != primH[vk] -> pvok = 0 :: else fi;
			if :: backE[vk] != backH[vk] -> bvok = 0 :: else fi;
			vk++
		:: else -> break
		od;
		vk = 0
	}
}

/* The slot state a load would see now (the winning copy), into `out`. */
inline effective(j, out) {
	validity();
	d_step { if :: pvok -> out = primE[j] :: else -> out = backE[j] fi; pvok = 0; bvok = 0 }
}

/* TableStore.load: a valid primary wins; a valid backup that differs is stale;
   else a valid backup wins; neither valid is `table unusable` (never reached). */
inline load() {
	validity();
	d_step {
		assert(pvok || bvok);   /* P8: the table never becomes unusable */
		bkValid = 1; k = 0;
		do
		:: k < NS ->
			if
			:: pvok -> orig[k] = primE[k]; if :: backE[k] != primE[k] -> bkValid = 0 :: else fi
			:: else -> orig[k] = backE[k]
			fi;
			cur[k] = orig[k]; k++
		:: else -> break
		od;
		k = 0;
		srcPrimary = pvok;
		bkValid = pvok && bvok && bkValid;
		needsRepair = !pvok || !bkValid;
		pvok = 0; bvok = 0
	}
}

/* Policy.normalize */
inline normalize() {
	d_step {
		k = 0;
		do
		:: k < NS ->
			if :: SU(cur[k]) == 1 && TR(cur[k]) > 0 -> cur[k] = MK(PR(cur[k]), 0, 1) :: else fi;
			if :: PR(cur[k]) > 0 && SU(cur[k]) == 0 && TR(cur[k]) == 0 -> cur[k] = MK(0, 0, 0) :: else fi;
			k++
		:: else -> break
		od;
		k = 0
	}
}

/* Policy.choose: the highest priority among bootable slots not excluded; a tie goes
   to the lower partition index (slot k is partition k+1). */
inline choose() {
	d_step {
		idx = NOSLOT; k = 0;
		do
		:: k < NS ->
			if
			:: ((excl >> k) & 1) == 0 && BOOTABLE(cur[k]) ->
				if
				:: idx == NOSLOT -> idx = k
#ifdef MUT_TIEBREAK
				:: idx != NOSLOT && PR(cur[k]) >= PR(cur[idx]) -> idx = k
#else
				:: idx != NOSLOT && PR(cur[k]) > PR(cur[idx]) -> idx = k
#endif
				:: else
				fi
			:: else
			fi;
			k++
		:: else -> break
		od;
		k = 0
	}
}

/* Policy.setActive(j, n): priority 15, n tries, not successful; if another slot is at
   15, the others with priority > 0 are re-ranked below it keeping order and ties. */
inline setActive(j, n) {
	d_step {
		levels = 0; k = 0;
		do
		:: k < NS -> if :: k != j -> levels = levels | (1 << PR(cur[k])) :: else fi; k++
		:: else -> break
		od;
		if
		:: (levels & (1 << 15)) != 0 ->
			k = 0;
			do
			:: k < NS ->
				if
				:: k != j && PR(cur[k]) > 0 ->
					rank = 0; lv = 15;
					do
					:: lv > PR(cur[k]) -> if :: ((levels >> lv) & 1) == 1 -> rank++ :: else fi; lv--
					:: else -> break
					od;
					cur[k] = MK((rank < 14 -> 14 - rank : 1), TR(cur[k]), SU(cur[k]))
				:: else
				fi;
				k++
			:: else -> break
			od
		:: else
		fi;
		cur[j] = MK(15, n, 0);
		k = 0; levels = 0; rank = 0; lv = 0
	}
}

/* One copy written: its entry array (one pwrite), then its header and a flush (a
   pwrite and an fsync). A cut between them leaves a copy whose header CRC does not
   match its entries (invalid) unless the entries did not change. */
inline writePrimary() {
	CUT;
	d_step { k = 0; do :: k < NS -> primE[k] = cur[k]; k++ :: else -> break od; k = 0 };
	W(1);
	CUT;
	d_step { k = 0; do :: k < NS -> primH[k] = cur[k]; k++ :: else -> break od; k = 0 };
	W(2)
}

inline writeBackup() {
	CUT;
	d_step { k = 0; do :: k < NS -> backE[k] = cur[k]; k++ :: else -> break od; k = 0 };
	W(1);
	CUT;
	d_step { k = 0; do :: k < NS -> backH[k] = cur[k]; k++ :: else -> break od; k = 0 };
	W(2)
}

/* BootControl.saveIfChanged + TableStore.save: only when a slot changed or a copy needs
   repair; primary first, except backup first when the primary won and the backup is
   not a valid copy of the same table. */
inline save() {
	d_step {
		changed = needsRepair; k = 0;
		do :: k < NS -> if :: cur[k] != orig[k] -> changed = 1 :: else fi; k++ :: else -> break od;
		k = 0
	};
	if
	:: changed && srcPrimary && !bkValid -> writeBackup(); writePrimary()
	:: changed && !(srcPrimary && !bkValid) -> writePrimary(); writeBackup()
	:: else
	fi;
	changed = 0
}

/* P3: a raise to v only if a confirmed slot (in the table a load would see) holds a
   signed image whose rollback index is at least v. */
inline checkRaise(v) {
	validity();
	d_step {
		rank = 0; k = 0;
		do
		:: k < NS ->
			if
			:: (pvok && SU(primE[k]) == 1 || !pvok && SU(backE[k]) == 1) && img[k] == IMG_SIGNED && ri[k] >= v -> rank = 1
			:: else
			fi;
			k++
		:: else -> break
		od;
		assert(rank == 1);   /* P3 */
		rank = 0; k = 0; pvok = 0; bvok = 0
	}
}

/* The counter raise of mark-successful: to the booted image's claim, only upward. */
inline raise() {
#ifdef ATOMIC_RAISE
	if
	:: ctr < claim -> CUT; checkRaise(claim); ctr = claim; W(3)
	:: else
	fi
#else
	do
	:: ctr < claim -> CUT; checkRaise(ctr + 1); ctr++
	:: else -> break
	od
#endif
}

inline showState() {
	validity();
	d_step {
		printf("STATE rc=%d booted=%d ctr=%d", rc, booted, ctr);
		printf(" primary=%d backup=%d", pvok, (bvok -> (pvok -> 1 : 1) : 0));
		k = 0;
		do
		:: k < NS ->
			if
			:: pvok -> printf(" s%d=%d,%d,%d", k, PR(primE[k]), TR(primE[k]), SU(primE[k]))
			:: else -> printf(" s%d=%d,%d,%d", k, PR(backE[k]), TR(backE[k]), SU(backE[k]))
			fi;
			printf(" v%d=%d", k, VERIFIES(k));
			k++
		:: else -> break
		od;
		/* stale: both valid, entries differ */
		rank = 0; k = 0;
		do :: k < NS -> if :: primE[k] != backE[k] -> rank = 1 :: else fi; k++ :: else -> break od;
		printf(" stale=%d\n", (pvok && bvok && rank == 1 -> 1 : 0));
		rank = 0; k = 0; pvok = 0; bvok = 0
	}
}
#ifdef TRACE
#define BEGIN(fmt) w = 0; ops++; printf(fmt)
#else
#define BEGIN(fmt) printf(fmt)
#endif

inline reset() {
	d_step {
		k = 0;
		do :: k < NS -> orig[k] = 0; cur[k] = 0; k++ :: else -> break od;
		k = 0; idx = 0; excl = 0; rejectedAny = 0; consumed = 0; changed = 0;
		srcPrimary = 0; bkValid = 0; needsRepair = 0; pvok = 0; bvok = 0;
		tgt = 0; nri = 0; nhealthy = 0; ntries = 0; goodAtStart = 0; lv = 0; rank = 0; levels = 0;
		trialEv = 0; activateEv = 0; rc = 0
	}
}

/* ---------------------------------------------------------------- the device */
active proctype device() {
	short s;
	/* Factory state: slot a holds a healthy signed image (rollback index 1), confirmed at
	   priority 15, the counter raised to 1; the other slots are empty. Or (a cgpt-made
	   table) slots a and b both confirmed at priority 15 with the same image: a tie. */
	d_step {
		k = 0;
		do :: k < NS -> primE[k] = 0; k++ :: else -> break od;
		k = 0;
		primE[0] = MK(15, 0, 1); img[0] = IMG_SIGNED; ri[0] = 1; healthy[0] = 1; ctr = 1
	};
	if
	:: skip
	:: primE[1] = MK(15, 0, 1); img[1] = IMG_SIGNED; ri[1] = 1; healthy[1] = 1
	fi;
	d_step {
		k = 0;
		do :: k < NS -> primH[k] = primE[k]; backE[k] = primE[k]; backH[k] = primE[k]; k++ :: else -> break od;
		k = 0
	};
	printf("INIT tie=%d\n", primE[1] != 0);
	showState();

loop:
#ifdef TRACE
	if :: ops >= MAXOPS -> goto recovery :: else fi;
#endif
	if
	/* ------------------------------------------------------------ boot (power on) */
	:: booted == NOSLOT ->
		BEGIN("CMD boot\n");
		/* P1/P2 preconditions, on the disk as the boot finds it */
		d_step { goodAtStart = 0; rejectedAny = 0; k = 0 };
		do
		:: k < NS ->
			effective(k, s);
			d_step {
				if :: SU(s) == 1 && VERIFIES(k) -> goodAtStart = 1 :: else fi;
				if :: BOOTABLE(s) && VERIFIES(k) -> rejectedAny = 1 :: else fi;
				k++
			}
		:: else -> break
		od;
		skip;
		d_step {
			k = 0; consumed = 0;
			do :: k < NS -> if :: GOODIMAGE(k) -> consumed = 1 :: else fi; k++ :: else -> break od;
			assert(rejectedAny || !consumed);   /* P2: never nothing bootable unless every image is bad */
			k = 0; consumed = 0; rejectedAny = 0; s = 0
		};
		load();
		normalize();
		excl = 0;
		do
		:: choose();
			if
			:: idx == NOSLOT -> break
			:: else ->
				assert(!incomplete[idx]);   /* P5: never chosen while its install is incomplete */
				if
				:: VERIFIES(idx) ->
					d_step {
#ifdef MUT_NOTRY
						consumed = 0;
#else
						consumed = (SU(cur[idx]) == 0 && TR(cur[idx]) > 0);
#endif
						if :: consumed -> cur[idx] = MK(PR(cur[idx]), TR(cur[idx]) - 1, 0) :: else fi
					};
					save();
					/* P6: a boot on trial has spent its try on disk before it goes on */
					effective(idx, s);
					assert(!consumed || s == cur[idx]);   /* P6: the spent try is on disk before the boot goes on */
					assert(ri[idx] >= ctr);     /* P4: no image below its counter boots */
					d_step { booted = idx; claim = ri[idx]; trialEv = (SU(cur[idx]) == 0); s = 0 };
					break
				:: else ->
					/* verifier refusal: unbootable, next candidate */
					d_step { cur[idx] = UNBOOTABLE; excl = excl | (1 << idx); rejectedAny = 1 }
				fi
			fi
		od;
		if
		:: booted == NOSLOT ->
			if :: rejectedAny -> save() :: else fi;
			assert(!goodAtStart);   /* P1: a good confirmed slot always boots */
			rc = 50;
			showState();
			goto recovery
		:: else
		fi

	/* ------------------------------------------- the init script: mark-successful */
#ifdef TRACE
	/* In simulation the init script runs after most boots, as on a device. */
	:: booted != NOSLOT && healthy[booted] -> goto marksuccessful
	:: booted != NOSLOT && healthy[booted] -> goto marksuccessful
	:: booted != NOSLOT && !healthy[booted] -> goto markfailed
	:: booted != NOSLOT && !healthy[booted] -> goto markfailed
#endif
	:: booted != NOSLOT && healthy[booted] ->
marksuccessful:
		BEGIN("CMD mark-successful\n");
		load();
		if
		:: PR(cur[booted]) == 0 -> rc = 51
		:: else ->
			cur[booted] = MK(PR(cur[booted]), 0, 1);
			if
			:: !VERIFIES(booted) -> rc = 22
			:: else ->
				normalize();
#ifdef MUT_RAISE_FIRST
				raise();
				save();
#else
				save();
				raise();
#endif
				rc = 0
			fi
		fi

	/* ------------------------------------------------ the init script: mark-failed */
	:: booted != NOSLOT && !healthy[booted] ->
markfailed:
		BEGIN("CMD mark-failed\n");
		load();
		cur[booted] = UNBOOTABLE;
		normalize();
		save();
		rc = 40

	/* ------------------------------ an operator: set-active of a slot not running,
	   from a running slot that is confirmed (as install requires, code 34; without
	   OPERATOR_ANYTIME: see README.md, "Findings") */
#ifdef OPERATOR_ANYTIME
	:: booted != NOSLOT ->
#else
	:: booted != NOSLOT && SU(primE[booted]) == 1 && SU(primH[booted]) == 1 ->
#endif
		select(tgt : 0 .. NS - 2);
		if :: tgt >= booted -> tgt++ :: else fi;
#ifdef TRACE
		if :: ntries = 1 :: ntries = 2 :: ntries = 3 fi;
#else
		select(ntries : 1 .. MAXT);
#endif
		BEGIN("CMD set-active ");
		printf("%d %d\n", tgt, ntries);
		incomplete[tgt] = 0;   /* the operator asked for this slot, whatever it holds */
		activateEv = 1;
		load();
		setActive(tgt, ntries);
		normalize();
		save();
		rc = 0

	/* ------------------------------------- the OTA client: install into a slot */
	:: booted != NOSLOT ->
#ifdef TRACE
		/* In simulation mostly into a slot that is not running (the OTA client's default). */
		if
		:: tgt = booted
		:: select(tgt : 0 .. NS - 2); if :: tgt >= booted -> tgt++ :: else fi
		:: select(tgt : 0 .. NS - 2); if :: tgt >= booted -> tgt++ :: else fi
		:: select(tgt : 0 .. NS - 2); if :: tgt >= booted -> tgt++ :: else fi
		fi;
#else
		select(tgt : 0 .. NS - 1);
#endif
#ifdef TRACE
		/* uniform in simulation (select() is not); the replay signs indexes 0..2 */
		if :: nri = 0 :: nri = 1 :: nri = 2 fi;
		if :: ntries = 1 :: ntries = 2 :: ntries = 3 fi;
#else
		select(nri : 0 .. MAXRI);
		select(ntries : 1 .. MAXT);
#endif
		select(nhealthy : 0 .. 1);
		BEGIN("CMD install ");
		printf("%d %d %d %d\n", tgt, nri, nhealthy, ntries);
		if
		/* 1. the image is verified before anything is written: rollback */
		:: nri < ctr -> rc = 22
		:: else ->
			load();
			if
			:: tgt == booted -> rc = 33              /* the running slot is never a target */
			:: tgt != booted && SU(orig[booted]) == 0 -> rc = 34   /* running slot on trial */
			:: else ->
				/* 3. the target unbootable, persisted */
				cur[tgt] = UNBOOTABLE;
				save();
				/* 4. copy, then the footer and a flush */
				effective(tgt, s);
				assert(tgt != booted);      /* P7: install never writes the running slot */
				assert(!BOOTABLE(s));       /* P5: nothing offers a slot being written */
				s = 0;
				CUT;
				d_step { incomplete[tgt] = 1; img[tgt] = IMG_PARTIAL; ri[tgt] = 0; healthy[tgt] = 0 };
				W(1);
#ifndef TRACE
				CUT;
#endif
				d_step { img[tgt] = IMG_SIGNED; ri[tgt] = nri; healthy[tgt] = nhealthy };
				W(2);
				/* 5. read back: verifies (no I/O faults in the model) */
				/* 6. activate, only if the entry is as this install left it */
				incomplete[tgt] = 0;
				activateEv = 1;
				load();
				if
				:: cur[tgt] != UNBOOTABLE -> rc = 32
				:: else ->
					setActive(tgt, ntries);
					normalize();
					save();
					rc = 0
				fi
			fi
		fi

	/* ------------------------------------------------------- a clean reboot */
	:: booted != NOSLOT ->
		BEGIN("CMD reboot\n");
		booted = NOSLOT; claim = 0; rc = 0
	fi;
	showState();
	reset();
	goto loop;

powercut:
	skip;
	/* The disk keeps what was written; /run is gone. */
	d_step { booted = NOSLOT; claim = 0; s = 0 };
	reset();
	showState();
	goto loop;

recovery:
	/* Nothing to boot: the hook goes to recovery. A valid end state. */
	skip
}

#ifdef LIVENESS
/* P6': a slot on trial cannot be booted forever: infinitely many trial boots need
   infinitely many activations (set-active, install). Checked with `pan -a`. */
ltl trials { ([]<> trialEv) -> ([]<> activateEv) }
#endif
