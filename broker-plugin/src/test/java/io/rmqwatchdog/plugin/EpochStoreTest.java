package io.rmqwatchdog.plugin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** The persisted last epoch: missing is 0, garbage is an error (never 0), writes replace it. */
public class EpochStoreTest {
    @Rule
    public TemporaryFolder folder = new TemporaryFolder();

    @Test
    public void aMissingFileIsEpochZeroAndAStoredEpochSurvivesANewStore() throws IOException {
        Path path = new File(folder.getRoot(), "store/watchdog-plugin.epoch").toPath();
        assertEquals(0L, new EpochStore(path).load());
        new EpochStore(path).store(42L);
        assertEquals(42L, new EpochStore(path).load());
        new EpochStore(path).store(43L);
        assertEquals(43L, new EpochStore(path).load());
        assertEquals("43\n", new String(Files.readAllBytes(path), StandardCharsets.US_ASCII));
        assertFalse(new File(path.getParent().toFile(), ".watchdog-plugin.epoch.tmp").exists());
    }

    @Test
    public void garbageIsAnErrorNotZero() throws IOException {
        Path path = folder.newFile("watchdog-plugin.epoch").toPath();
        for (String bad : new String[] {"", "x", "-1", "99999999999999999999", "1 2"}) {
            Files.write(path, bad.getBytes(StandardCharsets.US_ASCII));
            try {
                new EpochStore(path).load();
                fail("read " + bad);
            } catch (IOException expected) {
                // refused
            }
        }
    }
}
